"""The end-to-end fuzz run: hostile records through the whole job, and every promise checked.

    tests.hostile.hostile_records(seed) ─ JSON Lines files ─┬─ python -m pipeline.run (tenants of profile clevertap) ─┐
      + a few multi-megabyte strings around the size limit   └─ python -m pipeline.run (tenants of profile braze) ─────┤
                                                                                                                     │
    outcomes, dead letters, objects, every file under the work folder, the exit status ─ check ─ table, fuzz.json ─┘

    python -m bench fuzz --count 100000 [--seed N] [--profile clevertap|braze|both]

Both profiles read the same files: a record shaped for the other profile is
hostile input too. Each run has a tenant file of four tenants, so that every
outcome occurs: `default` (records naming no tenant) archives every channel;
`acme` archives email and sms only (the rest is SKIPPED) with zstd; `globex`
points at a folder whose parent is a file, so each of its writes FAILS; and
`initech` (named by records, absent from the file) is FAILED as an unknown
tenant.

What is checked, for each run (a violation is any one of them broken):

- exactly one outcome per non-empty input line (an empty line is counted as
  `blank lines` in the summary, not as a record), and nothing else;
- every outcome line and dead-letter line is strict JSON;
- every ARCHIVED object exists, its bytes match the outcome's sha256 and size,
  it decompresses by its suffix (lz4, gzip, zstd) and parses as STRICT JSON
  (RFC 8259: UTF-8, no NaN/Infinity, no duplicate keys, no lone surrogates),
  its key matches the profile's layout (tests.hostile.KEY_PATTERNS) and is at
  most 1,024 bytes; no object in a destination lacks an outcome;
- every INVALID and FAILED input has exactly one dead letter whose bytes are
  the input line's (a CRLF line keeps its CR: the reader removes only "\\n"),
  and no other input has one;
- no file is written, changed or removed outside the destinations, the
  outcomes folder and the dead-letter folder (the work folder, the job's
  working directory and its TMPDIR are snapshotted before and after);
- the exit status is the documented one: 3 when a message FAILED, else 0;
  and no traceback on stderr (an error that escaped instead of becoming an outcome).

Nothing here is timed against a target: the run's seconds are reported.
"""

from __future__ import annotations

import base64
import collections
import datetime as _dt
import gzip
import hashlib
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field

import lz4.frame
import zstandard

from bench.measure import ROOT, machine
from tests.hostile import KEY_PATTERNS, MAX_KEY_BYTES, hostile_record, hostile_records, strict_loads

PROFILES = ("clevertap", "braze")
STATUSES = ("ARCHIVED", "FAILED", "INVALID", "SKIPPED")
HOSTILE_BYTES = 64 * 1024         # long strings of the hostile classes are sized around this
MAX_MESSAGE_BYTES = 3 * 1024 * 1024  # the job's limit; the multi-megabyte records straddle it
HUGE_RECORDS = 6
EXAMPLES = 5                      # examples kept per kind of violation
EXIT_OK, EXIT_FAILED_MESSAGES = 0, 3
_DECOMPRESS = {".lz4": lz4.frame.decompress, ".gz": gzip.decompress,
               ".zst": lambda data: zstandard.ZstdDecompressor().decompress(data), ".json": bytes}


# --- the corpus ---------------------------------------------------------------------------

AUDIT_FOLDERS = ("archive_index", "archive_manifests")


def write_corpus(folder: str, seed: int, count: int, files: int = 2, huge: int = HUGE_RECORDS,
                 limit: int = MAX_MESSAGE_BYTES) -> dict[str, list[str]]:
    """`count` hostile records (plus `huge` multi-megabyte ones) in `files` JSON Lines
    files; the class of each line, per file path."""
    os.makedirs(folder, exist_ok=True)
    rng = random.Random(seed * 7919 + 1)
    spots = set(rng.sample(range(count + huge), huge)) if huge else set()
    generated = hostile_records(seed, count, HOSTILE_BYTES)
    paths = [os.path.join(folder, f"hostile-{i}.jsonl") for i in range(files)]
    classes: dict[str, list[str]] = {p: [] for p in paths}
    handles = [open(p, "wb") for p in paths]
    try:
        for index in range(count + huge):
            if index in spots:
                raw, name = hostile_record(rng, limit, "long_string")
                name = "multi_megabyte" + name[len("long_string"):]
            else:
                raw, name = next(generated)
            if b"\n" in raw:  # one record per line: a raw newline would make two
                raise AssertionError(f"a {name} record holds a newline")
            path = paths[index % files]
            handles[index % files].write(raw + b"\n")
            classes[path].append(name)
    finally:
        for handle in handles:
            handle.close()
    return classes


# --- one run of the job -------------------------------------------------------------------

@dataclass
class Job:
    """Where one profile's run reads and writes."""

    profile: str
    work: str
    inputs: list[str]
    run_id: str
    workers: int = 1

    def __post_init__(self):
        out = os.path.join(self.work, "out", self.profile)
        self.destinations = {name: os.path.join(out, "archive", name) for name in ("default", "acme")}
        self.blocked = os.path.join(self.work, "blocked")            # a file: globex's folder cannot exist
        self.destinations["globex"] = os.path.join(self.blocked, "archive")
        self.outcomes = os.path.join(out, "outcomes")
        self.dead_letters = os.path.join(out, "dead-letters")
        self.spill = os.path.join(out, "spill")                       # must stay absent: nothing spills
        self.tenants = os.path.join(self.work, f"tenants-{self.profile}.json")
        self.cwd = os.path.join(self.work, "cwd")
        self.tmp = os.path.join(self.work, "tmp")

    def allowed(self) -> list[str]:
        """The folders the job may write into."""
        return [self.destinations["default"], self.destinations["acme"], self.outcomes, self.dead_letters]

    def prepare(self) -> None:
        for folder in (self.cwd, self.tmp):
            os.makedirs(folder, exist_ok=True)
        if not os.path.exists(self.blocked):
            with open(self.blocked, "w") as handle:
                handle.write("a file where globex's folder would be\n")
        every = ["email", "push", "sms", "whatsapp"] if self.profile == "clevertap" else ["email", "push", "sms",
                                                                                       "mms"]
        tenants = {
            "default": {"profile": self.profile, "channels": every,
                        "destinations": [{"url": self.destinations["default"]}]},
            "acme": {"profile": self.profile, "compression": "zstd", "channels": ["email", "sms"],
                     "destinations": [{"url": self.destinations["acme"]}]},
            "globex": {"profile": self.profile, "channels": every,
                       "destinations": [{"url": self.destinations["globex"]}]},
        }
        with open(self.tenants, "w") as handle:
            json.dump({"tenants": tenants}, handle, indent=2)

    def argv(self) -> list[str]:
        argv = [sys.executable, "-m", "pipeline.run", "--input", ",".join(self.inputs),
                "--tenants", self.tenants, "--tenant", "default", "--profile", self.profile,
                "--outcomes", self.outcomes, "--dead_letters", self.dead_letters, "--spill_dir", self.spill,
                "--run_id", self.run_id, "--max_message_bytes", str(MAX_MESSAGE_BYTES),
                "--retry_base_delay", "0.001", "--retry_max_delay", "0.005", "--hold_seconds", "0"]
        if self.workers > 1:
            argv += ["--direct_num_workers", str(self.workers), "--direct_running_mode", "multi_processing"]
        return argv

    def run(self, timeout: float = 3600) -> tuple[int, str, str, float]:
        env = {**os.environ, "PYTHONPATH": ROOT, "TMPDIR": self.tmp}
        started = time.monotonic()
        completed = subprocess.run(self.argv(), cwd=self.cwd, env=env, capture_output=True, text=True,
                                   errors="backslashreplace", timeout=timeout)
        return completed.returncode, completed.stdout, completed.stderr, time.monotonic() - started


# --- the checks ---------------------------------------------------------------------------

@dataclass
class Findings:
    """What one run produced, by input class, and every promise it broke."""

    counts: collections.Counter = field(default_factory=collections.Counter)  # (class, status) -> n
    violations: dict[str, list] = field(default_factory=dict)                 # kind -> [count, examples]

    def violation(self, kind: str, example: str) -> None:
        entry = self.violations.setdefault(kind, [0, []])
        entry[0] += 1
        if len(entry[1]) < EXAMPLES:
            entry[1].append(example[:300])

    @property
    def total_violations(self) -> int:
        return sum(count for count, _ in self.violations.values())


def snapshot(*folders: str) -> dict[str, tuple[int, int]]:
    """Every file under the folders: path -> (size, mtime in ns)."""
    found = {}
    for folder in folders:
        for parent, _, names in os.walk(folder):
            for name in names:
                path = os.path.join(parent, name)
                try:
                    info = os.lstat(path)
                except FileNotFoundError:
                    continue
                found[path] = (info.st_size, info.st_mtime_ns)
    return found


def strict_document(data: bytes):
    """RFC 8259 and nothing more (tests.hostile.strict_loads), and no lone surrogate:
    json.loads decodes a "\\ud800" escape to one, which UTF-8 cannot encode."""
    value = strict_loads(data)
    json.dumps(value, ensure_ascii=False).encode("utf-8")  # UnicodeEncodeError on a lone surrogate
    return value


def read_lines(path: str):
    """(line number, bytes) of a file, each without its "\\n" only (the reader's rule)."""
    with open(path, "rb") as handle:
        for number, line in enumerate(handle, start=1):
            yield number, line[:-1] if line.endswith(b"\n") else line


def _run_files(folder: str, name: str, run_id: str, findings: Findings) -> list[str]:
    """The run's output files in `folder`; any other file there is a violation."""
    mine = re.compile(rf"{re.escape(name)}-{re.escape(run_id)}-\d{{5}}-of-\d{{5}}\.jsonl")
    found = []
    for parent, _, names in os.walk(folder):
        for file_name in names:
            path = os.path.join(parent, file_name)
            if parent == folder and mine.fullmatch(file_name):
                found.append(path)
            else:
                findings.violation("stray file in an output folder", os.path.relpath(path, folder))
    return sorted(found)


def _records(paths: list[str], what: str, findings: Findings):
    for path in paths:
        for number, line in read_lines(path):
            try:
                record = strict_document(line)
                if not isinstance(record, dict):
                    raise ValueError("not an object")
            except (ValueError, UnicodeError) as exc:
                findings.violation(f"{what} line is not strict JSON", f"{os.path.basename(path)}:{number}: {exc}")
                continue
            yield record


def _local_path(url: str) -> str:
    return url[len("file://"):] if url.startswith("file://") else url


def check(job: Job, classes: dict[str, list[str]], exit_code: int, stdout: str,
          before: dict, after: dict, stderr: str = "") -> Findings:
    """Every promise of the run `job` made, checked against its inputs and outputs."""
    findings = Findings()
    # What each non-empty input line is: its sha256, read back from the files themselves.
    expected: dict[tuple[str, int], tuple[str, str]] = {}  # (path, line) -> (sha256, class)
    blank = 0
    for path in job.inputs:
        names = classes[path]
        for number, line in read_lines(path):
            name = names[number - 1].split(":")[0] if number <= len(names) else "unknown"
            if line:
                expected[path, number] = (hashlib.sha256(line).hexdigest(), name)
            else:
                blank += 1
                findings.counts[name, "blank line"] += 1
    by_url = {}
    for path in job.inputs:
        by_url[path] = path
        by_url["file://" + path] = path

    def input_of(source) -> tuple[str, int] | None:
        url, _, number = str(source).rpartition(":")
        if url in by_url and number.isdigit():
            return by_url[url], int(number)
        return None

    # Outcomes: exactly one per non-empty line.
    seen: collections.Counter = collections.Counter()
    archived_paths = set()
    statuses = collections.Counter()
    roots = {name: os.path.realpath(folder) for name, folder in job.destinations.items()}
    pattern = KEY_PATTERNS[job.profile]
    wants_letter: dict[tuple[str, int], str] = {}
    for outcome in _records(_run_files(job.outcomes, "outcomes", job.run_id, findings), "outcome", findings):
        status = outcome.get("status")
        where = input_of(outcome.get("source"))
        if where is None or where not in expected:
            findings.violation("outcome for no input line", f"source {str(outcome.get('source'))[-120:]}")
            continue
        seen[where] += 1
        if seen[where] > 1:
            findings.violation("more than one outcome for a line", f"{os.path.basename(where[0])}:{where[1]}")
            continue
        if status not in STATUSES:
            findings.violation("unknown outcome status", repr(status))
            continue
        statuses[status] += 1
        sha, name = expected[where]
        findings.counts[name, status] += 1
        if status in ("INVALID", "FAILED"):
            wants_letter[where] = status
        if status == "INVALID" and outcome.get("input_sha256") != sha:
            findings.violation("INVALID outcome's input_sha256 is not the line's", f"{name} {where[1]}")
        if status == "ARCHIVED":
            _check_object(outcome, name, roots, pattern, archived_paths, findings)
    for where in expected:
        if seen[where] == 0:
            findings.violation("input line without an outcome",
                               f"{os.path.basename(where[0])}:{where[1]} ({expected[where][1]})")

    # Dead letters: one per INVALID or FAILED line, holding its exact bytes.
    letters: collections.Counter = collections.Counter()
    for letter in _records(_run_files(job.dead_letters, "dead-letters", job.run_id, findings), "dead letter",
                           findings):
        where = input_of(letter.get("source"))
        if where is None or where not in expected:
            findings.violation("dead letter for no input line", f"source {str(letter.get('source'))[-120:]}")
            continue
        letters[where] += 1
        sha, name = expected[where]
        try:
            data = (letter["input"].encode("utf-8") if isinstance(letter.get("input"), str)
                    else base64.b64decode(letter["input_base64"], validate=True))
        except (KeyError, ValueError, TypeError, UnicodeError) as exc:
            findings.violation("dead letter without the input's bytes", f"{name} line {where[1]}: {exc!r}")
            continue
        if hashlib.sha256(data).hexdigest() != sha:
            findings.violation("dead letter's bytes are not the input line's", f"{name} line {where[1]}")
        if letter.get("input_sha256") != sha:
            findings.violation("dead letter's input_sha256 is not the line's", f"{name} line {where[1]}")
        if where in wants_letter and letter.get("status", "INVALID") != wants_letter[where]:
            findings.violation("dead letter's status is not its outcome's",
                               f"{name} line {where[1]}: {letter.get('status')} for {wants_letter[where]}")
    for where, status in wants_letter.items():
        if letters[where] != 1:
            findings.violation(f"{status} line without exactly one dead letter",
                               f"{expected[where][1]} line {where[1]}: {letters[where]}")
    for where in letters:
        if where not in wants_letter and seen[where]:
            findings.violation("dead letter for a line neither INVALID nor FAILED",
                               f"{expected[where][1]} line {where[1]}")

    # Files: objects only where outcomes say, nothing outside the job's folders.
    allowed = [os.path.realpath(f) + os.sep for f in job.allowed()]
    for path in sorted(set(before) | set(after)):
        if before.get(path) == after.get(path):
            continue
        real = os.path.realpath(path) if path in after else path
        if not any(real.startswith(a) for a in allowed):
            change = "removed" if path not in after else "changed" if path in before else "written"
            findings.violation(f"file {change} outside the output folders", os.path.relpath(path, job.work))
    for name in ("default", "acme"):
        for parent, _, names in os.walk(roots[name]):
            if os.path.relpath(parent, roots[name]).split(os.sep)[0] in AUDIT_FOLDERS:
                continue  # the audit index and manifests beside the objects (tests/test_retrieval.py)
            for file_name in names:
                path = os.path.realpath(os.path.join(parent, file_name))
                if path not in archived_paths:
                    findings.violation("object without an ARCHIVED outcome", os.path.relpath(path, roots[name]))

    # The summary and the exit status.
    shown = re.search(r"^blank lines\s+([\d,]+)", stdout, re.M)
    counted = int(shown.group(1).replace(",", "")) if shown else 0
    if counted != blank:
        findings.violation("blank lines not counted", f"the summary says {counted}, the files hold {blank}")
    wanted_exit = EXIT_FAILED_MESSAGES if statuses["FAILED"] else EXIT_OK
    if exit_code != wanted_exit:
        findings.violation("exit status", f"{exit_code}, documented: {wanted_exit}; stderr ends "
                                          + " / ".join(stderr.strip().splitlines()[-3:]))
    if "Traceback (most recent call last)" in stderr:  # an error escaped instead of becoming an outcome
        at = stderr.index("Traceback (most recent call last)")
        findings.violation("a traceback on stderr", " / ".join(stderr[at:].splitlines()[-3:]))
    return findings


def _check_object(outcome: dict, name: str, roots: dict, pattern, archived_paths: set, findings: Findings):
    url = outcome.get("url") or ""
    path = os.path.realpath(_local_path(url))
    tenant = outcome.get("tenant") or "default"
    root = roots.get(tenant)
    if root is None or not path.startswith(root + os.sep):
        findings.violation("object outside its tenant's destination", f"{name}: {url[-160:]}")
        return
    key = path[len(root) + 1:]
    if not pattern.fullmatch(key):
        findings.violation("key does not match the profile's layout", f"{name}: {key[:200]}")
    if len(key.encode("utf-8")) > MAX_KEY_BYTES:
        findings.violation("key longer than 1,024 bytes", f"{name}: {len(key.encode())} bytes")
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError as exc:
        findings.violation("ARCHIVED object missing", f"{name}: {key[:160]} ({type(exc).__name__})")
        return
    archived_paths.add(path)
    if hashlib.sha256(data).hexdigest() != outcome.get("sha256"):
        findings.violation("object's sha256 is not the outcome's", f"{name}: {key[:160]}")
    if len(data) != outcome.get("bytes"):
        findings.violation("object's size is not the outcome's", f"{name}: {key[:160]}")
    suffix = next((s for s in _DECOMPRESS if key.endswith(s)), None)
    try:
        document = strict_document(_DECOMPRESS[suffix](data) if suffix else b"")
        if not isinstance(document, dict):
            raise ValueError("not a JSON object")
    except Exception as exc:  # any codec's or parser's error: the object cannot be read back
        findings.violation("object is not strict JSON once decompressed", f"{name}: {key[:120]}: {exc!r}"[:300])


# --- the whole command --------------------------------------------------------------------

def run(count: int, seed: int, profiles: tuple[str, ...], work: str, log=lambda text: None,
        files: int = 2, huge: int = HUGE_RECORDS, workers: int = 1) -> dict:
    """Generate, run the job once per profile, check; the report (see render)."""
    started = time.monotonic()
    classes = write_corpus(os.path.join(work, "input"), seed, count, files, huge)
    inputs = sorted(classes)
    lines = sum(len(c) for c in classes.values())
    log(f"fuzz: {lines:,} records ({count:,} hostile-mix + {huge} multi-megabyte) in {files} file(s), "
        f"{sum(os.path.getsize(p) for p in inputs) / 2 ** 20:.0f} MiB, seed {seed}")
    report = {"settings": {"count": count, "seed": seed, "profiles": list(profiles), "files": files,
                           "multi_megabyte_records": huge, "max_message_bytes": MAX_MESSAGE_BYTES,
                           "hostile_string_bytes": HOSTILE_BYTES, "workers": workers},
              "generate_seconds": round(time.monotonic() - started, 1), "runs": {}}
    for profile in profiles:
        job = Job(profile, work, inputs, run_id=f"fuzz-{profile}-{seed}", workers=workers)
        job.prepare()
        watched = (work, job.cwd, job.tmp)
        before = snapshot(*watched)
        log(f"fuzz: running the job with the {profile} profile")
        exit_code, stdout, stderr, seconds = job.run()
        after = snapshot(*watched)
        findings = check(job, classes, exit_code, stdout, before, after, stderr)
        table = collections.defaultdict(dict)
        for (name, status), n in sorted(findings.counts.items()):
            table[name][status] = n
        report["runs"][profile] = {
            "seconds": round(seconds, 1), "records_per_second": round(lines / seconds, 1) if seconds else None,
            "exit_code": exit_code, "classes": dict(table),
            "outcomes": {s: sum(n for (_, st), n in findings.counts.items() if st == s)
                         for s in STATUSES + ("blank line",)},
            "violations": {kind: {"count": c, "examples": e} for kind, (c, e) in findings.violations.items()},
            "violation_count": findings.total_violations}
        log(f"fuzz: {profile}: exit {exit_code} in {seconds:.1f} s, {findings.total_violations} violation(s)")
    report["violation_count"] = sum(r["violation_count"] for r in report["runs"].values())
    report["seconds"] = round(time.monotonic() - started, 1)
    return report


def render(report: dict) -> str:
    """Per profile: input classes × outcome counts, then every violation."""
    out = []
    columns = STATUSES + ("blank line",)
    for profile, result in report["runs"].items():
        out.append(f"\n{profile}: exit {result['exit_code']}, {result['seconds']:.1f} s "
                   f"({result['records_per_second'] or 0:,.0f} records/s)")
        width = max([len("class")] + [len(c) for c in result["classes"]])
        out.append(f"{'class':<{width}}  " + "  ".join(f"{c:>10}" for c in columns) + f"  {'total':>8}")
        totals = collections.Counter()
        for name in sorted(result["classes"]):
            row = result["classes"][name]
            totals.update(row)
            out.append(f"{name:<{width}}  " + "  ".join(f"{row.get(c, 0):>10,}" for c in columns)
                       + f"  {sum(row.values()):>8,}")
        out.append(f"{'all':<{width}}  " + "  ".join(f"{totals.get(c, 0):>10,}" for c in columns)
                   + f"  {sum(totals.values()):>8,}")
        if result["violations"]:
            out.append(f"VIOLATIONS ({result['violation_count']:,}):")
            for kind, found in sorted(result["violations"].items()):
                out.append(f"  {found['count']:>7,}  {kind}")
                out += [f"           e.g. {example}" for example in found["examples"]]
        else:
            out.append("violations: none")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m bench fuzz", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=100_000, help="hostile records (default 100000)")
    parser.add_argument("--seed", type=int, default=1, help="the corpus' seed: the same records for the same seed")
    parser.add_argument("--profile", default="both", choices=[*PROFILES, "both"],
                        help="the tenants' profile: one job run per profile (default both)")
    parser.add_argument("--files", type=int, default=2, help="input files the records are spread over")
    parser.add_argument("--huge", type=int, default=HUGE_RECORDS,
                        help=f"multi-megabyte records around the {MAX_MESSAGE_BYTES // 2 ** 20} MiB limit "
                             f"(default {HUGE_RECORDS})")
    parser.add_argument("--workers", type=int, default=1,
                        help="DirectRunner workers (default 1: the default local runner; >1: multi-processing)")
    parser.add_argument("--work", default=None, help="parent of the temporary work folder (default: the system's)")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (inputs and outputs)")
    parser.add_argument("--out", default=os.path.join(ROOT, "bench", "results"),
                        help="folder of the JSON report, fuzz.json (default bench/results)")
    args = parser.parse_args(argv)
    if args.count < 0 or args.files < 1 or args.huge < 0 or args.workers < 1:
        parser.error("--count and --huge must be 0 or more, --files and --workers 1 or more")

    def log(text: str) -> None:
        print(f"{time.strftime('%H:%M:%S')} {text}", file=sys.stderr, flush=True)

    profiles = PROFILES if args.profile == "both" else (args.profile,)
    work = tempfile.mkdtemp(prefix="fuzz-", dir=args.work)
    try:
        report = run(args.count, args.seed, profiles, work, log, args.files, args.huge, args.workers)
    finally:
        if args.keep:
            log(f"fuzz: kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    report = {"machine": machine(),
              "measured_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"), **report}
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "fuzz.json"), "w") as handle:
        json.dump(report, handle, indent=2)
    print(render(report))
    print(f"\n{report['violation_count']:,} violation(s); {report['seconds']:.0f} s; "
          f"report: {os.path.join(args.out, 'fuzz.json')}")
    return 1 if report["violation_count"] else 0


if __name__ == "__main__":
    sys.exit(main())
