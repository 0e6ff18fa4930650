"""Scenario a: backfill to local disk, our pipeline beside the floor and the naive pipeline.

    python -m bench.backfill --messages 100000 --out bench/results

For each message mix (sms: the sample's SMS-sized messages; email: about 12 KB
of HTML each) it runs, on the same input files:

- pipeline: `python -m pipeline.run` on the DirectRunner with its best settings
  for this machine (both cores: multi-processing workers, the input in several
  files so each worker has some to read);
- floor: one Python process doing the same parse, normalise, hash, compress and
  write in a plain loop (no Beam, one core);
- naive: a Beam pipeline whose Map does one blocking fsspec write per element.

It reports messages per second and the peak resident memory of each run's
whole process tree, as JSON and a PNG bar chart, and is not a test: nothing
here asserts a time.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

import psutil

from archive.sample import generate

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EMAIL_HTML_BYTES = 12 * 1024


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
            record["message_id"] = f"{mix}-{written}"
            handles[written % files].write(json.dumps(record).encode() + b"\n")
            written += 1
            if written == count:
                break
    finally:
        for handle in handles:
            handle.close()
    return written


class PeakMemory:
    """Samples the resident memory of a process and its children every 50 ms."""

    def __init__(self, pid: int):
        self._process = psutil.Process(pid)
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            try:
                tree = [self._process] + self._process.children(recursive=True)
                self.peak = max(self.peak, sum(p.memory_info().rss for p in tree if p.is_running()))
            except psutil.Error:
                pass
            self._stop.wait(0.05)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def timed(argv: list[str], count: int) -> dict:
    started = time.monotonic()
    process = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    with PeakMemory(process.pid) as memory:
        _, err = process.communicate()
    elapsed = time.monotonic() - started
    if process.returncode != 0:
        raise RuntimeError(f"{argv[2:4]} failed ({process.returncode}): {err.decode()[-2000:]}")
    return {"messages": count, "seconds": round(elapsed, 3),
            "messages_per_second": round(count / elapsed, 1), "peak_rss_mb": round(memory.peak / 2 ** 20, 1)}


def run_scenario(count: int, mix: str, work: str) -> dict:
    inputs = os.path.join(work, f"in-{mix}")
    count = write_inputs(inputs, count, mix)
    python = sys.executable
    results = {}
    variants = {
        "pipeline": [python, "-m", "pipeline.run", "--input", inputs, "--destination", os.path.join(work, "p"),
                     "--outcomes", os.path.join(work, "po"), "--summary", "false",
                     "--direct_num_workers", "2", "--direct_running_mode", "multi_processing"],
        "floor": [python, "-m", "bench.floor", inputs, os.path.join(work, "f")],
        "naive": [python, "-m", "bench.naive", inputs, os.path.join(work, "n")],
    }
    for name, argv in variants.items():
        results[name] = timed(argv, count)
        shutil.rmtree(os.path.join(work, name[0]), ignore_errors=True)
    floor, naive = results["floor"]["messages_per_second"], results["naive"]["messages_per_second"]
    pipeline = results["pipeline"]["messages_per_second"]
    results["ratios"] = {"pipeline_vs_floor": round(pipeline / floor, 2),
                         "pipeline_vs_naive": round(pipeline / naive, 2)}
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.backfill", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=100_000, help="messages per mix (default 100000)")
    parser.add_argument("--mixes", default="sms,email", help="comma-separated: sms, email")
    parser.add_argument("--out", default=os.path.join(ROOT, "bench", "results"), help="folder for the JSON")
    args = parser.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    report = {"scenario": "a: backfill to local disk", "machine": machine(), "mixes": {}}
    with tempfile.TemporaryDirectory(prefix="bench-a-") as work:
        for mix in args.mixes.split(","):
            report["mixes"][mix] = run_scenario(args.messages, mix, os.path.join(work, mix))
            print(f"{mix}: {json.dumps(report['mixes'][mix])}", file=sys.stderr)
    path = os.path.join(args.out, "backfill.json")
    with open(path, "w") as handle:
        json.dump(report, handle, indent=2)
    from bench.plots import throughput_bars

    machine_line = f"{report['machine']['cpus']} cores, {report['machine']['memory_gb']} GB"
    throughput_bars(report, os.path.join(args.out, "backfill.png"),
                    f"Scenario a: backfill to local disk ({machine_line})")
    print(path)
    return 0


def machine() -> dict:
    import platform

    return {"cpus": os.cpu_count(), "memory_gb": round(psutil.virtual_memory().total / 2 ** 30, 1),
            "python": platform.python_version(), "platform": platform.platform()}


if __name__ == "__main__":
    sys.exit(main())
