"""How the benchmarks measure: runs as subprocesses, their memory and CPU, a quiet
machine before each run, and the span over which objects were written.

Two rates are reported for every run:

- end to end: messages / wall time of the whole command, start-up included
  (what a user waits for);
- steady: (objects - 1) / (last object's write time - first object's), read
  back from the store itself (file mtimes, S3 LastModified), the same way for
  every variant: the rate once running, which is what a long backfill sees.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import platform
import queue
import statistics
import subprocess
import threading
import time
import traceback
from dataclasses import asdict, dataclass, field

import psutil

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@dataclass
class Run:
    """One run of one variant."""

    messages: int
    seconds: float               # wall time of the whole command
    peak_rss_mb: float           # of the process tree, sampled every 50 ms
    cpu_seconds: float           # user + system of the process tree
    objects: int | None = None   # objects found in the store afterwards
    steady_seconds: float | None = None  # first object written to last
    extra: dict = field(default_factory=dict)

    @property
    def messages_per_second(self) -> float:
        return self.messages / self.seconds

    @property
    def steady_messages_per_second(self) -> float | None:
        if not self.steady_seconds or not self.objects or self.objects < 2:
            return None
        return (self.objects - 1) / self.steady_seconds

    def to_dict(self) -> dict:
        data = asdict(self)
        data["messages_per_second"] = round(self.messages_per_second, 1)
        steady = self.steady_messages_per_second
        data["steady_messages_per_second"] = round(steady, 1) if steady else None
        return data


def interleaved(variants: tuple[str, ...], repeat: int):
    """(round, variant) in the order to run them: round r starts with variant r, so
    that whatever drifts during a long benchmark falls on every variant alike."""
    for round_number in range(repeat):
        first = round_number % len(variants)
        for name in variants[first:] + variants[:first]:
            yield round_number, name


def run_counted(argv: list[str], messages: int, objects_and_span) -> Run:
    """`run_command`, then the objects the run left in the store and the span of
    their write times (`objects_and_span()`); a run that lost any fails."""
    run = run_command(argv, messages)
    run.objects, run.steady_seconds = objects_and_span()
    if run.objects != messages:
        raise RuntimeError(f"{' '.join(argv[:4])} wrote {run.objects} objects for {messages} messages")
    return run


def describe(label: str, run: Run) -> str:
    return (f"{label}: {run.messages_per_second:,.0f}/s end to end, "
            f"{run.steady_messages_per_second or 0:,.1f}/s steady, {run.peak_rss_mb:,.0f} MB")


def ratios(result: dict, pairs: tuple[tuple[str, str], ...]) -> dict:
    """`<one>_vs_<other>` of the end-to-end rates and `..._steady` of the steady ones."""
    return {f"{one}_vs_{other}{suffix}": ratio(result[one][key], result[other][key])
            for one, other in pairs
            for suffix, key in (("", "messages_per_second"), ("_steady", "steady_messages_per_second"))}


def median_run(runs: list[Run]) -> dict:
    """The run with the median steady rate (else end-to-end rate), and every run's figures."""
    def rate(run: Run) -> float:
        return run.steady_messages_per_second or run.messages_per_second
    ordered = sorted(runs, key=rate)
    chosen = ordered[(len(ordered) - 1) // 2].to_dict()
    chosen["runs"] = [run.to_dict() for run in runs]
    if len(runs) > 1:
        chosen["spread"] = {key: [round(min(values), 1), round(max(values), 1)] for key, values in (
            ("messages_per_second", [r.messages_per_second for r in runs]),
            ("steady_messages_per_second", [rate(r) for r in runs]))}
    return chosen


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and its descendants so far."""
    try:
        root = psutil.Process(pid)
        tree = [root] + root.children(recursive=True)
    except psutil.Error:
        return 0.0
    total = 0.0
    for process in tree:
        try:
            times = process.cpu_times()
            total += times.user + times.system
        except psutil.Error:
            pass
    return total


class ProcessTreeSampler:
    """Samples a process and its descendants: resident memory (peak and a series)
    and CPU time (of every process seen, kept after it exits)."""

    def __init__(self, pid: int, interval: float = 0.05):
        self._root = psutil.Process(pid)
        self._interval = interval
        self.peak = 0
        self.series: list[tuple[float, int]] = []  # (seconds since start, RSS bytes)
        self._cpu: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._started = time.monotonic()

    def _run(self):
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self._interval)

    def sample(self) -> int:
        rss = 0
        try:
            tree = [self._root] + self._root.children(recursive=True)
        except psutil.Error:
            return 0
        for process in tree:
            try:
                with process.oneshot():
                    rss += process.memory_info().rss
                    times = process.cpu_times()
                self._cpu[process.pid] = times.user + times.system
            except psutil.Error:
                pass
        if rss:
            self.peak = max(self.peak, rss)
            self.series.append((time.monotonic() - self._started, rss))
        return rss

    @property
    def cpu_seconds(self) -> float:
        return sum(self._cpu.values())

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def run_command(argv: list[str], messages: int, env: dict | None = None, timeout: float = 3600) -> Run:
    """Run a command to completion from the repository root; raise with its error
    output when it fails, so a broken variant never yields a number."""
    started = time.monotonic()
    process = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               env={**os.environ, **(env or {})})
    with ProcessTreeSampler(process.pid) as sampler:
        try:
            out, err = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            out, err = process.communicate()
            raise RuntimeError(f"{' '.join(argv[:4])} ran over {timeout:.0f} s: {err.decode()[-2000:]}")
    elapsed = time.monotonic() - started
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[:4])} failed ({process.returncode}): {err.decode()[-3000:]}")
    extra = {}
    for line in out.decode(errors="replace").splitlines():
        if line.startswith("BENCH "):  # a variant's own report, e.g. the PUT loop's
            extra.update(json.loads(line[len("BENCH "):]))
    return Run(messages=messages, seconds=round(elapsed, 3), peak_rss_mb=round(sampler.peak / 2 ** 20, 1),
               cpu_seconds=round(sampler.cpu_seconds, 2), extra=extra)


def in_processes(function, shares: list[tuple]) -> list:
    """`function(*share)` in a spawned process per share, side by side; their
    return values, in order. Raises when one of them fails, with its traceback."""
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    processes = [context.Process(target=_return_through, args=(results, index, function, share))
                 for index, share in enumerate(shares)]
    for process in processes:
        process.start()
    returned, failures = {}, []
    for _ in processes:  # read before joining: a child blocks on a full queue until it is read
        try:
            index, ok, value = results.get(timeout=3600)
        except queue.Empty:
            break
        (returned.__setitem__(index, value) if ok else failures.append(value))
    for process in processes:
        process.join()
    failed = sum(bool(process.exitcode) for process in processes)
    if failures or failed or len(returned) != len(shares):
        raise RuntimeError(f"{function.__qualname__}: {max(failed, len(failures))} of {len(processes)} "
                           f"processes failed\n" + "\n".join(failures))
    return [returned[index] for index in range(len(shares))]


def _return_through(results, index: int, function, share: tuple) -> None:
    try:
        results.put((index, True, function(*share)))
    except BaseException:  # noqa: BLE001 - the parent raises it, with this traceback
        results.put((index, False, traceback.format_exc()))
        raise


def settle(max_seconds: float = 60.0, quiet_seconds: float = 1.0) -> float:
    """Flush dirty pages and wait until the disks have written nothing for
    `quiet_seconds` (deleting 100,000 files keeps ext4 busy for a while, which
    would slow whatever runs next). Returns the seconds waited."""
    started = time.monotonic()
    os.sync()
    last, quiet_since = _sectors_written(), time.monotonic()
    while time.monotonic() - started < max_seconds:
        time.sleep(0.25)
        now = _sectors_written()
        if now != last:
            last, quiet_since = now, time.monotonic()
        elif time.monotonic() - quiet_since >= quiet_seconds:
            break
    return round(time.monotonic() - started, 2)


def _sectors_written() -> int:
    try:
        with open("/proc/diskstats") as stats:
            return sum(int(fields[9]) for fields in (line.split() for line in stats) if len(fields) > 9)
    except OSError:
        return 0


def local_object_span(root: str, suffixes: tuple[str, ...] = (".lz4", ".gz", ".zst", ".json")
                      ) -> tuple[int, float | None]:
    """(objects under `root`, seconds from the first object's mtime to the last's)."""
    count, first, last = 0, None, None
    stack = [root]
    while stack:
        try:
            entries = os.scandir(stack.pop())
        except FileNotFoundError:
            continue
        with entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    stack.append(entry.path)
                elif entry.name.endswith(suffixes) and not entry.name.startswith("."):
                    stamp = entry.stat(follow_symlinks=False).st_mtime_ns
                    count += 1
                    first = stamp if first is None or stamp < first else first
                    last = stamp if last is None or stamp > last else last
    return count, (last - first) / 1e9 if count > 1 else None


def s3_object_span(client, bucket: str, prefix: str = "") -> tuple[int, float | None]:
    """(objects in the bucket under `prefix`, seconds from the first LastModified to the last)."""
    count, first, last = 0, None, None
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            stamp = item["LastModified"].timestamp()
            count += 1
            first = stamp if first is None or stamp < first else first
            last = stamp if last is None or stamp > last else last
    return count, (last - first) if count > 1 else None


def percentiles(values: list[float], points=(50, 95, 99)) -> dict:
    if not values:
        return {f"p{p}": None for p in points}
    ordered = sorted(values)
    cuts = statistics.quantiles(ordered, n=100, method="inclusive") if len(ordered) > 1 else ordered * 99
    found = {f"p{p}": round(cuts[p - 1], 1) for p in points}
    found["max"] = round(ordered[-1], 1)
    found["mean"] = round(statistics.fmean(ordered), 1)
    return found


def machine() -> dict:
    info = {"cpus": os.cpu_count(), "memory_gb": round(psutil.virtual_memory().total / 2 ** 30, 1),
            "python": platform.python_version(), "platform": platform.platform()}
    try:
        import apache_beam

        info["apache_beam"] = apache_beam.__version__
    except ImportError:
        pass
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            info["cpu_model"] = next(line.split(":", 1)[1].strip() for line in cpuinfo
                                     if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return info


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    if not numerator or not denominator:
        return None
    return round(numerator / denominator, 2)


def target(name: str, value: float | None, limit: float, at_least: bool = True) -> dict:
    """One target's verdict: `value` against `limit` (at least, or at most)."""
    met = value is not None and (value >= limit if at_least else value <= limit)
    return {"target": name, "value": value, "limit": limit, "met": met}
