"""Publish realistic outbound messages to Kafka or Pub/Sub at a chosen rate.

    python -m bench.loadgen --kafka 127.0.0.1:9092 --topic outbound --rate 1000 --seconds 60
    python -m bench.loadgen --pubsub projects/local/topics/outbound --rate 200 --count 5000

Messages come from archive.sample (every channel of the profile, a share of
bad ones with --bad-ratio). Each carries a `sent_at` of the moment it is
published, so a consumer can measure publish-to-delivery latency. The rate is
kept by a token schedule, not by sleeping per message, and what was achieved
is printed at the end.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Callable, Iterable

from archive.sample import generate


def stamped(records: Iterable[bytes]) -> Iterable[bytes]:
    """Set sent_at to the publish time (ms) on every well-formed record."""
    for data in records:
        try:
            record = json.loads(data)
        except ValueError:
            yield data  # a deliberately bad record: as it is
            continue
        if isinstance(record, dict):
            record["sent_at"] = int(time.time() * 1000)
            record.pop("batch_date", None)
            record.pop("batch_id", None)
            yield json.dumps(record).encode()
        else:
            yield data


def paced(publish: Callable[[bytes], None], records: Iterable[bytes], rate: float, seconds: float | None,
          count: int | None) -> tuple[int, float]:
    started = time.monotonic()
    sent = 0
    for data in stamped(records):
        if count is not None and sent >= count:
            break
        if seconds is not None and time.monotonic() - started >= seconds:
            break
        due = started + sent / rate
        wait = due - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        publish(data)
        sent += 1
    return sent, time.monotonic() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.loadgen", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--kafka", help="Kafka bootstrap servers (with --topic)")
    target.add_argument("--pubsub", help="Pub/Sub topic path projects/P/topics/T (PUBSUB_EMULATOR_HOST is honoured)")
    parser.add_argument("--topic", help="Kafka topic")
    parser.add_argument("--rate", type=float, default=100.0, help="messages per second (default 100)")
    parser.add_argument("--seconds", type=float, help="stop after this long")
    parser.add_argument("--count", type=int, help="stop after this many messages")
    parser.add_argument("--profile", default="clevertap", help="clevertap or braze (default clevertap)")
    parser.add_argument("--bad-ratio", type=float, default=0.02, help="share of bad records (default 0.02)")
    parser.add_argument("--seed", type=int, default=7, help="generator seed (default 7)")
    args = parser.parse_args(argv)
    if args.kafka and not args.topic:
        parser.error("--kafka needs --topic")
    if args.seconds is None and args.count is None:
        parser.error("give --seconds or --count")
    total = args.count or int(args.rate * args.seconds) + 1
    records = generate(total, args.profile, seed=args.seed, bad_ratio=args.bad_ratio)

    if args.kafka:
        from confluent_kafka import Producer

        producer = Producer({"bootstrap.servers": args.kafka, "linger.ms": 5, "acks": "all"})

        def publish(data: bytes) -> None:
            producer.produce(args.topic, data)
            producer.poll(0)
        sent, elapsed = paced(publish, records, args.rate, args.seconds, args.count)
        producer.flush(60)
    else:
        from google.cloud import pubsub_v1

        publisher = pubsub_v1.PublisherClient()
        futures = []
        sent, elapsed = paced(lambda data: futures.append(publisher.publish(args.pubsub, data)),
                              records, args.rate, args.seconds, args.count)
        for future in futures:
            future.result(60)
    print(f"loadgen: {sent} messages in {elapsed:.1f} s ({sent / max(elapsed, 1e-9):.0f}/s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
