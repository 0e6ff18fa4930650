"""Scenario e: what a message costs to archive, one object per message beside batched objects.

The same SMS-sized messages, sent at a steady rate (by default 386 a second:
a billion a month), are archived to an S3-compatible store 20 ms away
(gofakes3 behind Toxiproxy, as scenario b) by:

- message: `python -m pipeline.run`, one object per message (the seeds' layout);
- batched: the same job with `--object_mode batched` (60-second windows, at
  most 10,000 messages per object);
- floor: `bench.putloop`, the raw concurrent PUT loop of the message objects
  (scenario b's floor): the ceiling of one-object-per-message at this distance;
- prepare ceiling: `Archiver.prepare` alone, per core, times the cores: the
  domain's own cost, which bounds a mode whose requests are few.

Requests are counted from what each run says and leaves: PUTs of archive
objects = the attempts its outcomes report (per object: a batch's outcomes
share one object's attempts), PUTs of the audit index and manifests = their
objects in the bucket (each written once). Dollars per million messages use
S3's published list prices (us-east-1), kept in PRICES with the date they were
read, so a reader can redo the arithmetic with today's.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import sys
from collections import defaultdict

from bench.backfill import prepare_cost, write_inputs
from bench.measure import describe, ratio, run_command, target
from devservers import gofakes3, toxiproxy

VARIANTS = ("message", "batched", "floor")
LATENCY_MS = 20
SEND_RATE = 1_000_000_000 / (30 * 86_400)  # a billion messages a month
START_MS = 1_764_547_200_000  # 2025-12-01T00:00:00Z

# S3 list prices, us-east-1, as published on aws.amazon.com/s3/pricing (read 2026-12; change here).
PRICES = {
    "read": "2026-12",
    "STANDARD": {"put_per_1000": 0.005, "gb_month": 0.023, "min_object_bytes": 0},
    "STANDARD_IA": {"put_per_1000": 0.01, "gb_month": 0.0125, "min_object_bytes": 128 * 1024},
    "GLACIER_IR": {"put_per_1000": 0.02, "gb_month": 0.004, "min_object_bytes": 128 * 1024},
}


def spread(folder: str, rate: float) -> None:
    """Give the messages send times `rate` a second apart, in file order: traffic, not a backlog."""
    index = 0
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name)
        with gzip.open(path, "rb") as handle:
            records = [json.loads(line) for line in handle]
        for record in records:
            record["sent_at"] = START_MS + int(index * 1000 / rate)
            index += 1
        with gzip.open(path, "wb", compresslevel=1) as handle:
            handle.write(b"".join(json.dumps(r).encode() + b"\n" for r in records))


def commands(inputs: str, bucket: str, options: dict, outcomes: str, workers: int, in_flight: int) -> dict:
    python, options_json = sys.executable, json.dumps(options)
    pipeline = [python, "-m", "pipeline.run", "--input", inputs, "--destination", f"s3://{bucket}",
                "--storage_options", options_json, "--outcomes", outcomes, "--summary", "false",
                "--max_in_flight", str(in_flight), "--direct_num_workers", str(workers),
                "--direct_running_mode", "multi_processing"]
    return {
        "message": pipeline,
        "batched": pipeline + ["--object_mode", "batched", "--batch_seconds", "60", "--batch_max_messages", "10000"],
        "floor": [python, "-m", "bench.putloop", inputs, f"s3://{bucket}", options_json,
                  "--processes", str(workers), "--in-flight", str(in_flight), "--client", "obstore"],
    }


def bucket_usage(client, bucket: str) -> dict:
    """Objects and bytes under each top-level prefix of the bucket."""
    usage: dict = defaultdict(lambda: {"objects": 0, "bytes": 0, "sizes": []})
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for item in page.get("Contents", []):
            prefix = item["Key"].split("/", 1)[0]
            usage[prefix]["objects"] += 1
            usage[prefix]["bytes"] += item["Size"]
            usage[prefix]["sizes"].append(item["Size"])
    return dict(usage)


def archive_puts(outcomes: str) -> tuple[int, int]:
    """(messages ARCHIVED, PUT attempts of their objects) from a run's outcome files."""
    archived, attempts = 0, {}
    for name in os.listdir(outcomes):
        with open(os.path.join(outcomes, name), encoding="utf-8") as handle:
            for line in handle:
                outcome = json.loads(line)
                if outcome["status"] == "ARCHIVED":
                    archived += 1
                    attempts[outcome["url"]] = max(attempts.get(outcome["url"], 0), outcome.get("attempts") or 1)
    return archived, sum(attempts.values())


def dollars(puts: int, objects_sizes: list[int], messages: int) -> dict:
    """$ per million messages: requests once, storage per month, per storage class."""
    per_million = 1_000_000 / messages
    out = {}
    for name, price in PRICES.items():
        if name == "read":
            continue
        billed = sum(max(size, price["min_object_bytes"]) for size in objects_sizes)
        out[name] = {"requests": round(puts * per_million * price["put_per_1000"] / 1000, 4),
                     "storage_per_month": round(billed * per_million / 1e9 * price["gb_month"], 4)}
    return out


def run(count: int, work: str, log, workers: int = 2, in_flight: int = 64, latency_ms: int = LATENCY_MS,
        send_rate: float = SEND_RATE) -> dict:
    inputs = os.path.join(work, "in-e")
    count = write_inputs(inputs, count, "sms")
    spread(inputs, send_rate)
    prepare_us = prepare_cost(inputs)
    result: dict = {}
    with gofakes3.start() as store, toxiproxy.start() as toxi:
        proxy = toxi.create_proxy("s3", upstream=store.endpoint_url.removeprefix("http://"))
        proxy.add_latency(latency_ms)
        options = store.storage_options(endpoint_url=f"http://{proxy.listen}")
        client = store.boto3_client()
        try:
            for name in VARIANTS:
                bucket = store.create_bucket(f"bench-cost-{name}")
                outcomes = os.path.join(work, f"outcomes-e-{name}")
                outcome = run_command(commands(inputs, bucket, options, outcomes, workers, in_flight)[name], count)
                usage = bucket_usage(client, bucket)
                archive_prefix = "sent_batches" if name == "batched" else "sent_messages"
                stored = usage.get(archive_prefix, {"objects": 0, "bytes": 0, "sizes": []})
                if name == "floor":
                    archived, puts = count, stored["objects"] + outcome.extra.get("put_retries", 0)
                else:
                    archived, puts = archive_puts(outcomes)
                if archived != count:
                    raise RuntimeError(f"scenario e {name}: {archived} of {count} messages archived")
                bookkeeping = sum(usage.get(p, {"objects": 0})["objects"]
                                  for p in ("archive_index", "archive_manifests"))
                outcome.objects = stored["objects"]
                log(describe(f"e {name}", outcome) + f", {stored['objects']:,} objects, {puts:,} archive PUTs")
                result[name] = {
                    **outcome.to_dict(),
                    "archive_objects": stored["objects"], "archive_bytes": stored["bytes"],
                    "archive_puts": puts, "index_and_manifest_puts": bookkeeping,
                    "puts_per_million_messages": round((puts + bookkeeping) * 1_000_000 / count),
                    "messages_per_object": round(count / max(stored["objects"], 1), 1),
                    "cpu_ms_per_message": round(outcome.cpu_seconds * 1000 / count, 3),
                    "dollars_per_million_messages": dollars(puts + bookkeeping, stored["sizes"], count),
                }
                shutil.rmtree(outcomes, ignore_errors=True)
        finally:
            shutil.rmtree(inputs, ignore_errors=True)
    ceiling = workers * 1e6 / prepare_us
    result["prepare_ceiling"] = {"prepare_us_per_message": prepare_us, "messages_per_second": round(ceiling, 1)}
    result["ratios"] = {
        "batched_vs_message": ratio(result["batched"]["messages_per_second"], result["message"]["messages_per_second"]),
        "message_vs_floor": ratio(result["message"]["messages_per_second"], result["floor"]["messages_per_second"]),
        "batched_vs_prepare_ceiling": ratio(result["batched"]["messages_per_second"], ceiling),
        "put_reduction": ratio(result["message"]["puts_per_million_messages"],
                               result["batched"]["puts_per_million_messages"]),
    }
    standard = {name: result[name]["dollars_per_million_messages"]["STANDARD"]["requests"]
                for name in ("message", "batched")}
    report = {"scenario": "e", "title": f"cost: one object per message vs batched objects, store {latency_ms} ms away",
              "settings": {"messages": count, "send_rate_per_second": round(send_rate, 1), "workers": workers,
                           "in_flight_per_worker": in_flight, "latency_ms": latency_ms,
                           "batch": {"seconds": 60, "max_messages": 10_000}, "prices": PRICES,
                           "store": f"gofakes3 {gofakes3.GOFAKES3_VERSION} behind toxiproxy "
                                    f"{toxiproxy.TOXIPROXY_VERSION}"},
              "modes": result,
              "table": [{"mode": name, "puts_per_million": result[name]["puts_per_million_messages"],
                         "put_dollars_per_million": standard[name],
                         "put_dollars_per_billion_a_month": round(standard[name] * 1000, 2),
                         "messages_per_second": result[name]["messages_per_second"],
                         "cpu_ms_per_message": result[name]["cpu_ms_per_message"]}
                        for name in ("message", "batched")]}
    report["targets"] = [
        target("batched PUTs <= 1/100 of one-per-message", ratio(
            result["batched"]["puts_per_million_messages"], result["message"]["puts_per_million_messages"]),
            0.01, at_least=False),
        target("batched throughput >= message throughput", result["ratios"]["batched_vs_message"], 1.0),
        target("message mode >= 0.5 x raw PUT loop (end to end)", result["ratios"]["message_vs_floor"], 0.5),
    ]
    return report
