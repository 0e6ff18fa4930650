"""The floor of scenario c: a hand-written streaming archiver, no Beam.

    python -m bench.streamfloor --bootstrap HOST:PORT --topic T --group G --deliveries T \\
        --failures T --destination s3://BUCKET --storage_options JSON [--in-flight 256]

What a small service would do instead of the pipeline, in one asyncio
process: consume with confluent-kafka, `Archiver.prepare` each message, PUT
its object with the pipeline's own direct client (archive.direct: obstore,
the same request), then produce the message to the delivery topic and wait
for the broker's ack; a message that is invalid or whose PUT failed goes to
the failure topic instead. Up to `--in-flight` messages are between consume
and ack at once. Every 200 ms it commits, per partition, the offset below the
lowest message not yet acked: at-least-once, like the pipeline's gate. No
retries, no breaker, no outcomes topic, no metrics: the least a correct
archiver must do, which is what makes it a floor.

It runs until SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import time

from archive import direct
from archive.archiver import Archiver
from archive.tenants import Destination

COMMIT_EVERY_S = 0.2


class Floor:
    def __init__(self, args):
        from confluent_kafka import Consumer, Producer

        self.args = args
        self.consumer = Consumer({
            "bootstrap.servers": args.bootstrap, "group.id": args.group, "enable.auto.commit": False,
            "auto.offset.reset": "earliest", "fetch.wait.max.ms": 5,
            "topic.metadata.refresh.interval.ms": 1000})
        self.producer = Producer({"bootstrap.servers": args.bootstrap, "linger.ms": 1, "acks": "all"})
        self.backend = direct.plan(Destination(args.destination, json.loads(args.storage_options)),
                                   "direct").open()
        self.archiver = Archiver()
        self.unfinished: dict[tuple[str, int], set[int]] = {}   # (topic, partition) -> offsets in flight
        self.next_offset: dict[tuple[str, int], int] = {}       # one past the last consumed
        self.in_flight = 0
        self.stopping = False

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        self.consumer.subscribe([self.args.topic])
        last_commit = time.monotonic()
        while not self.stopping:
            room = self.args.in_flight - self.in_flight
            batch = self.consumer.consume(num_messages=min(room, 500), timeout=0) if room > 0 else []
            for message in batch:
                if message.error() is None:
                    self._start(loop, message)
            self.producer.poll(0)  # delivery callbacks run here, on the loop's thread
            if time.monotonic() - last_commit >= COMMIT_EVERY_S:
                self._commit()
                last_commit = time.monotonic()
            await asyncio.sleep(0 if batch else 0.002)
        self.producer.flush(10)
        self._commit()
        self.consumer.close()

    def _start(self, loop, message) -> None:
        place = (message.topic(), message.partition())
        self.unfinished.setdefault(place, set()).add(message.offset())
        self.next_offset[place] = message.offset() + 1
        self.in_flight += 1
        loop.create_task(self._archive(loop, place, message.offset(), message.value()))

    async def _archive(self, loop, place, offset: int, raw: bytes) -> None:
        topic = self.args.deliveries
        try:
            request = self.archiver.prepare(raw)
            await self.backend.put(request.key, request.data, request.metadata, create_only=False)
        except Exception:  # InvalidMessage, or the PUT failed: held, not delivered
            topic = self.args.failures
        acked = loop.create_future()
        self.producer.produce(topic, raw, on_delivery=lambda error, _m: acked.set_result(error))
        await acked
        self.unfinished[place].discard(offset)
        self.in_flight -= 1

    def _commit(self) -> None:
        from confluent_kafka import TopicPartition

        offsets = [TopicPartition(topic, partition, min(self.unfinished[(topic, partition)], default=end))
                   for (topic, partition), end in self.next_offset.items()]
        if offsets:
            self.consumer.commit(offsets=offsets, asynchronous=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.streamfloor", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    for name in ("bootstrap", "topic", "group", "deliveries", "failures", "destination", "storage_options"):
        parser.add_argument(f"--{name}", required=True)
    parser.add_argument("--in-flight", type=int, default=256)
    args = parser.parse_args(argv)
    floor = Floor(args)

    def stop(*_):
        floor.stopping = True
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    asyncio.run(floor.run())
    return 0


if __name__ == "__main__":
    sys.exit(main())
