"""Scenario a: backfill to local disk, the pipeline beside the floor and the naive pipeline.

For each message mix (sms: SMS- and WhatsApp-sized messages; email: about
12 KB of HTML each) the same input files (gzipped JSON Lines, four of them) are
archived by:

- pipeline: `python -m pipeline.run` on the DirectRunner with its best settings
  for this 2-core machine: two multi-processing workers, one per core;
- floor: `bench.floor`, one process, a plain loop over the same prepare and
  local write, without Beam, outcomes or concurrency;
- two floors: two such loops side by side on halves of the files, sharing
  nothing: the ceiling of any two-process pipeline on this machine, which
  shows what the second core can give (the kernel's file creation does not
  scale to two cores the way the Python work does);
- naive: `bench.naive`, a Beam pipeline whose Map does one blocking
  `fsspec.open(...).write(...)` per element.

Each mix also reports what `Archiver.prepare` alone costs per message (one
process, the best of three passes over the same input): the domain's own
cost, which bounds every variant.

Runs are interleaved (round r starts with variant r), the disk is let settle
before each run and outputs are deleted only after a mix's last round.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import sys

from archive.sample import generate
from bench.measure import (
    Run, describe, interleaved, local_object_span, median_run, ratios, run_counted, settle, target)

EMAIL_HTML_BYTES = 12 * 1024
VARIANTS = ("pipeline", "floor", "two_floors", "naive")


def write_inputs(folder: str, count: int, mix: str, files: int = 4) -> int:
    """`count` valid messages of the mix, spread over `files` gzipped JSON Lines files."""
    os.makedirs(folder, exist_ok=True)
    handles = [gzip.open(os.path.join(folder, f"part-{i}.jsonl.gz"), "wb", compresslevel=1)
               for i in range(files)]
    written = 0
    try:
        for data in generate(count * 8, "clevertap", seed=11, bad_ratio=0.0):
            record = json.loads(data)
            channel = record["channel"].lower()
            if mix == "sms" and channel not in ("sms", "whatsapp"):
                continue
            if mix == "email":
                if channel != "email":
                    continue
                body = record.get("html_body", "")
                record["html_body"] = (body * (EMAIL_HTML_BYTES // max(len(body), 1) + 1))[:EMAIL_HTML_BYTES]
            record.pop("dispatch_id", None)  # one id per message: message_id
            record["message_id"] = f"{mix}-{written}"
            handles[written % files].write(json.dumps(record).encode() + b"\n")
            written += 1
            if written == count:
                break
    finally:
        for handle in handles:
            handle.close()
    return written


def prepare_cost(inputs: str, passes: int = 3, limit: int = 20_000) -> float:
    """Microseconds of `Archiver.prepare` per message over the first `limit` messages
    of the input files (100,000 12-KB e-mails would hold 1.2 GB), the best of
    `passes` passes in this process (after one pass to warm its caches)."""
    import time

    from archive.archiver import Archiver

    lines = []
    for name in sorted(os.listdir(inputs)):
        with gzip.open(os.path.join(inputs, name), "rb") as handle:
            lines += [line.rstrip(b"\n") for line, _ in zip(handle, range(limit - len(lines)))]
    archiver = Archiver()
    best = float("inf")
    for index in range(passes + 1):
        started = time.perf_counter()
        for line in lines:
            archiver.prepare(line)
        if index:
            best = min(best, time.perf_counter() - started)
    return round(best / max(len(lines), 1) * 1e6, 1)


def commands(inputs: str, destination: str) -> dict[str, list[str]]:
    python = sys.executable
    return {
        "pipeline": [python, "-m", "pipeline.run", "--input", inputs, "--destination", destination,
                     "--outcomes", destination + "-outcomes", "--summary", "false",
                     "--direct_num_workers", "2", "--direct_running_mode", "multi_processing"],
        "floor": [python, "-m", "bench.floor", inputs, destination],
        "two_floors": [python, "-m", "bench.floor", inputs, destination, "--processes", "2"],
        "naive": [python, "-m", "bench.naive", inputs, destination],
    }


def run_mix(mix: str, count: int, work: str, repeat: int, log) -> dict:
    inputs = os.path.join(work, f"in-{mix}")
    count = write_inputs(inputs, count, mix)
    runs: dict[str, list[Run]] = {name: [] for name in VARIANTS}
    outputs = []
    try:
        prepare_us = prepare_cost(inputs)
        log(f"a/{mix} prepare: {prepare_us} us per message")
        for round_number, name in interleaved(VARIANTS, repeat):
            destination = os.path.join(work, f"out-{mix}-{name}-{round_number}")
            outputs += [destination, destination + "-outcomes"]
            settled = settle()
            run = run_counted(commands(inputs, destination)[name], count,
                              lambda: local_object_span(os.path.join(destination, "sent_messages")))
            run.extra["settled_seconds"] = settled
            runs[name].append(run)
            log(describe(f"a/{mix} round {round_number + 1}/{repeat} {name}", run))
    finally:
        for path in outputs:
            shutil.rmtree(path, ignore_errors=True)
        shutil.rmtree(inputs, ignore_errors=True)
    result = {name: median_run(runs[name]) for name in VARIANTS}
    result["prepare_us_per_message"] = prepare_us
    result["ratios"] = ratios(result, (("pipeline", "floor"), ("pipeline", "naive"), ("two_floors", "floor"),
                                       ("pipeline", "two_floors")))
    return result


def run(count: int, mixes: list[str], work: str, repeat: int, log) -> dict:
    report = {"scenario": "a", "title": "Backfill to local disk",
              "settings": {"messages": count, "repeat": repeat, "work": work,
                           "pipeline": "DirectRunner (FnApiRunner), 2 multi-processing workers"},
              "mixes": {}}
    for mix in mixes:
        report["mixes"][mix] = run_mix(mix, count, work, repeat, log)
    report["targets"] = []
    for mix, result in report["mixes"].items():
        found = result["ratios"]
        report["targets"] += [
            target(f"{mix}: pipeline >= 1.5 x floor (steady)", found["pipeline_vs_floor_steady"], 1.5),
            target(f"{mix}: pipeline >= 1.5 x floor (end to end)", found["pipeline_vs_floor"], 1.5),
            target(f"{mix}: pipeline >= 3 x naive (steady)", found["pipeline_vs_naive_steady"], 3.0),
            target(f"{mix}: pipeline >= 3 x naive (end to end)", found["pipeline_vs_naive"], 3.0),
            target(f"{mix}: pipeline peak RSS < 1.5 GB", result["pipeline"]["peak_rss_mb"], 1536, at_least=False),
        ]
        if mix == "sms":
            report["targets"].append(target("sms: prepare <= 25 us per message", result["prepare_us_per_message"],
                                            25, at_least=False))
    return report
