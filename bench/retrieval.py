"""Scenario d: retrieval. Finding one person in a large index; verify and rebuild against a store 20 ms away.

- find: an audit index of `index_rows` messages (10 million at full size: one
  tenant, four channels, 30 days, so 120 partitions of Parquet), generated
  here with pyarrow in the index's own layout and sort order. One person has a
  dozen messages among them. `message-archiver find --email ... --json` runs as
  a user runs it (a new process: interpreter, imports, listing, scan); the
  median of three is reported, beside the query alone in a warm process.
- verify: `objects` archived SMS-sized objects (100,000 at full size) in an
  S3-compatible store (gofakes3) behind Toxiproxy's 20 ms, with their index;
  `message-archiver verify` re-reads and hashes every one. Its floor, in the
  same run: a raw concurrent GET loop with the same client (obstore, through
  archive.direct, as verify reads a store that allows it) at the same
  concurrency, reading and hashing the same objects.
- rebuild: `message-archiver index rebuild` on the same bucket (list, read,
  parse every object, write the index).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import time

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from archive import audit
from archive.archiver import Archiver
from bench.backfill import write_inputs
from bench.measure import ROOT, ratio, target
from devservers import gofakes3, toxiproxy

LATENCY_MS = 20
CHANNELS = ("email", "push", "sms", "whatsapp")
DAYS = 30
PERSON = "the.person@example.org"


def run(index_rows: int, objects: int, work: str, log, workers: int = 64) -> dict:
    report = {"scenario": "d", "title": "retrieval: find in a large index; verify and rebuild 20 ms away",
              "settings": {"index_rows": index_rows, "objects": objects, "latency_ms": LATENCY_MS,
                           "workers": workers, "partitions": len(CHANNELS) * DAYS}}
    report["find"] = find_in_generated_index(index_rows, os.path.join(work, "index-d"), log)
    report["store"] = verify_and_rebuild(objects, work, workers, log)
    store = report["store"]
    report["mixes"] = {"objects": {
        "verify": _as_variant(store["verify"], objects), "raw_get_loop": _as_variant(store["raw_get_loop"], objects),
        "index_rebuild": _as_variant(store["index_rebuild"], objects)}}
    report["targets"] = [
        target("find one person in the index < 1 s (CLI, median)", report["find"]["cli_seconds"], 1.0,
               at_least=False),
        target("verify >= 0.9 x raw GET loop (same concurrency)", store["verify_vs_raw_get_loop"], 0.9),
    ]
    return report


def _as_variant(run: dict, objects: int) -> dict:
    return {"messages": objects, "messages_per_second": run["objects_per_second"],
            "steady_messages_per_second": run["objects_per_second"], "peak_rss_mb": run.get("peak_rss_mb", 0)}


# --- find ---------------------------------------------------------------------------------------

def find_in_generated_index(rows: int, folder: str, log) -> dict:
    shutil.rmtree(folder, ignore_errors=True)
    started = time.monotonic()
    person_md5 = hashlib.md5(PERSON.encode()).hexdigest()
    rng = np.random.default_rng(17)
    partitions = [(channel, day) for channel in CHANNELS for day in range(DAYS)]
    per_partition = max(1, rows // len(partitions))
    person_messages = 12
    placed = set(rng.choice(len(partitions), size=person_messages, replace=False).tolist())
    written, files = 0, 0
    for number, (channel, day) in enumerate(partitions):
        count = per_partition if number < len(partitions) - 1 else rows - written
        table = _generated_partition(rng, count, channel, day, person_md5 if number in placed else None)
        date = f"2026-11-{day + 1:02d}"
        path = os.path.join(folder, audit.index_file_key(("default", channel, date), "part-bench-0"))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as handle:
            handle.write(audit.parquet_bytes(table))
        written += count
        files += 1
    generated = time.monotonic() - started
    log(f"d find: generated {written:,} index rows in {files} files in {generated:.1f} s")
    argv = [sys.executable, "-m", "cli", "find", "--destination", folder, "--email", PERSON, "--json",
            "--limit", "1000"]
    times, found = [], None
    for _ in range(3):
        began = time.monotonic()
        done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=600)
        times.append(time.monotonic() - began)
        if done.returncode != 0:
            raise RuntimeError(f"find failed ({done.returncode}): {done.stderr[-2000:]}")
        found = json.loads(done.stdout)["count"]
    if found != person_messages:
        raise RuntimeError(f"find returned {found} messages, not the {person_messages} placed")
    from retrieval.bucket import Bucket
    from retrieval.index import AuditIndex
    index = AuditIndex(Bucket(folder))
    warm = []
    for _ in range(3):
        began = time.monotonic()
        index.find(audit.person_digests(email=[PERSON]))
        warm.append(time.monotonic() - began)
    result = {"rows": written, "files": files, "found": found, "generate_seconds": round(generated, 1),
              "cli_seconds": round(statistics.median(times), 3), "cli_runs": [round(t, 3) for t in times],
              "query_seconds_warm": round(statistics.median(warm), 3),
              "index_bytes": sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(folder) for f in fs)}
    log(f"d find: {found} messages of one person among {written:,} in {result['cli_seconds']:.2f} s (CLI, "
        f"median of 3), {result['query_seconds_warm']:.2f} s warm")
    shutil.rmtree(folder, ignore_errors=True)
    return result


def _hex(rng, count: int, width: int = 16) -> pa.Array:
    raw = rng.bytes(width * count)
    return pa.array(np.frombuffer(raw.hex().encode("ascii"), dtype=f"S{2 * width}").astype(f"U{2 * width}"))


def _generated_partition(rng, count: int, channel: str, day: int, person_md5: str | None) -> pa.Table:
    """One partition's rows, shaped as the pipeline writes them (sorted by digest)."""
    recipients = _hex(rng, count)
    if person_md5 is not None:
        recipients = pc.if_else(pa.array(np.arange(count) == 0), pa.scalar(person_md5), recipients)
    ids = _hex(rng, count, 8)
    campaign = pa.array(rng.integers(1, 400, count).astype(str))
    keys = pc.binary_join_element_wise(f"sent_messages/{channel}", recipients, campaign,
                                       pc.binary_join_element_wise(ids, ".json.gz", ""), "/")
    start_ms = 1_793_577_600_000 + day * 86_400_000  # 2026-11-01 UTC
    sent = pa.array(start_ms + np.sort(rng.integers(0, 86_400_000, count)), pa.int64())
    none = pa.nulls(count, pa.string())
    columns = {
        "message_id": ids, "profile": pa.array(["braze"] * count), "recipient_md5": recipients,
        "push_token_md5": none, "user_id": _hex(rng, count, 12), "external_id": none, "campaign_id": campaign,
        "journey_id": none, "canvas_id": none, "canvas_step_id": none, "sent_at_ms": sent,
        "archived_at_ms": sent, "key": keys, "bytes": pa.array(rng.integers(300, 3000, count), pa.int64()),
        "sha256": _hex(rng, count, 32), "compression": pa.array(["gzip"] * count),
        "byte_offset": pa.nulls(count, pa.int64()),
    }
    table = pa.table({name: columns[name] for name in audit.FILE_COLUMNS})
    return table.sort_by([("recipient_md5", "ascending"), ("key", "ascending")])


# --- verify and rebuild against a store 20 ms away --------------------------------------------------

def verify_and_rebuild(count: int, work: str, workers: int, log) -> dict:
    inputs = os.path.join(work, "in-d")
    write_inputs(inputs, count, "sms")
    archiver, requests = Archiver(), []
    import gzip
    for name in sorted(os.listdir(inputs)):
        with gzip.open(os.path.join(inputs, name), "rb") as lines:
            requests.extend(archiver.prepare(line.rstrip(b"\n")) for line in lines)
    shutil.rmtree(inputs, ignore_errors=True)
    with gofakes3.start() as store, toxiproxy.start() as toxi:
        proxy = toxi.create_proxy("s3", upstream=store.endpoint_url.removeprefix("http://"))
        bucket = store.create_bucket("bench-retrieval")
        direct_options = store.storage_options()
        began = time.monotonic()
        asyncio.run(_put_all(requests, bucket, direct_options))
        from retrieval.bucket import Bucket
        from retrieval.index import write_rows
        rows = [audit.index_row(audit.parse_key(r.key), r.data, "default", None, r.payload, r.metadata.sha256)
                for r in requests]
        write_rows(Bucket(f"s3://{bucket}", direct_options), rows, "bench")
        log(f"d store: {len(requests):,} objects and their index written in {time.monotonic() - began:.1f} s")
        proxy.add_latency(LATENCY_MS)
        options = store.storage_options(endpoint_url=f"http://{proxy.listen}")
        flags = ["--destination", f"s3://{bucket}", "--storage_options", json.dumps(options), "--json", "--quiet"]
        results = {}
        verify = _timed_cli(["verify", *flags, "--workers", str(workers)])
        if verify["output"]["ok"] != count:
            raise RuntimeError(f"verify found {verify['output']['ok']} of {count} objects intact")
        results["verify"] = _rate(verify, count)
        began = time.monotonic()
        checked = asyncio.run(_get_all([r.key for r in requests], {r.key: r.metadata.sha256 for r in requests},
                                       bucket, options, workers))
        seconds = time.monotonic() - began
        if checked != count:
            raise RuntimeError(f"the raw GET loop matched {checked} of {count}")
        results["raw_get_loop"] = {"seconds": round(seconds, 2), "objects_per_second": round(count / seconds, 1)}
        rebuild = _timed_cli(["index", "rebuild", *flags, "--workers", str(workers)])
        if rebuild["output"]["rebuilt"][0]["indexed"] != count:
            raise RuntimeError("rebuild did not index every object")
        results["index_rebuild"] = _rate(rebuild, count)
    results["verify_vs_raw_get_loop"] = ratio(results["verify"]["objects_per_second"],
                                              results["raw_get_loop"]["objects_per_second"])
    for name in ("verify", "raw_get_loop", "index_rebuild"):
        log(f"d {name}: {results[name]['objects_per_second']:,.0f} objects/s ({results[name]['seconds']:.1f} s)")
    return results


def _timed_cli(argv: list[str]) -> dict:
    began = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "cli", *argv], cwd=ROOT, capture_output=True, text=True,
                          timeout=3600)
    seconds = time.monotonic() - began
    if done.returncode != 0:
        raise RuntimeError(f"{argv[:2]} failed ({done.returncode}): {done.stderr[-2000:]} {done.stdout[-2000:]}")
    return {"seconds": seconds, "output": json.loads(done.stdout)}


def _rate(timed: dict, count: int) -> dict:
    return {"seconds": round(timed["seconds"], 2), "objects_per_second": round(count / timed["seconds"], 1)}


async def _put_all(requests, bucket: str, options: dict) -> None:
    from archive import direct
    from archive.tenants import Destination
    backend = direct.plan(Destination(f"s3://{bucket}", options), "direct").open()
    queue = iter(requests)

    async def worker():
        for request in queue:
            await backend.put(request.key, request.data, request.metadata, create_only=True)
    await asyncio.gather(*(worker() for _ in range(128)))


async def _get_all(keys: list[str], expected: dict, bucket: str, options: dict, workers: int) -> int:
    """The floor: GET and sha256 every object, `workers` at once, with the client verify
    uses on S3 (archive.direct's obstore backend), and nothing else."""
    from archive import direct
    from archive.tenants import Destination

    backend = direct.plan(Destination(f"s3://{bucket}", options), "direct").open()
    gate, matched = asyncio.Semaphore(workers), 0

    async def one(key: str):
        nonlocal matched
        async with gate:
            data = await backend.cat(key)
        matched += hashlib.sha256(data).hexdigest() == expected[key]
    await asyncio.gather(*(one(key) for key in keys))
    return matched
