"""The batch fault suite (issue 9): the backfill job, run as users run it, while a real
store misbehaves, and what every message became.

    input file ─ python -m pipeline.run ─ s3fs ─┬─ FaultProxy: 503s, latency ─────────────┬─ moto (IAM auth
                 (a subprocess)                  └─ toxiproxy: resets, half-open, refused ─┘  for tenants)
    outcomes, dead letters (local files) ─┐
    every object, read back with boto3 ───┴─ audit: one outcome per input, none lost, no duplicate ─ record_row

A message is lost when it is neither ARCHIVED with its object in the store (same
sha256, strict JSON inside) nor FAILED with its input kept whole in the dead letters.
Each scenario records its figures (tests/reliability.py); `python -m tests.reliability`
renders them. Every server listens on 127.0.0.1; the faults are real: HTTP answers,
TCP resets, silent connections, revoked IAM policies, SIGKILL.
"""

from __future__ import annotations

import base64
import concurrent.futures
import datetime as dt
import gzip
import hashlib
import json
import math
import os
import re
import signal
import statistics
import subprocess
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from typing import Callable

import lz4.frame
import psutil
import pytest

from archive.store import ObjectMetadata, StoreSpec
from devservers import toxiproxy
from devservers.faultproxy import FaultProxy, Rule, s3_error_body
from tests.reliability import record_row
from tests.test_pipeline import clevertap_records

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RECORDS = clevertap_records()[:3]  # email, push, sms
RECIPIENTS = ("Customer@Example.com", "customer@example.com", "+1 555 555 5555", "+15555555555",
              "frfsgvrwe:APfdsafsg")
TRANSIENT_RETRIES = 8  # RetryPolicy's default: the budget the hold goes past


# --- the job ----------------------------------------------------------------------------

def message_lines(prefix: str, count: int, tenants: tuple[str | None, ...] = (None,)) -> list[bytes]:
    """`count` distinct messages (email, push, sms in turn), tenants taken in turn."""
    lines = []
    for i in range(count):
        record = {**RECORDS[i % len(RECORDS)], "message_id": f"{prefix}-{i}"}
        tenant = tenants[i % len(tenants)]
        if tenant is not None:
            record["tenant"] = tenant
        lines.append(json.dumps(record).encode())
    return lines


def write_input(folder, lines: list[bytes], name: str = "in.jsonl") -> str:
    path = os.path.join(folder, name)
    with open(path, "wb") as handle:
        handle.write(b"\n".join(lines) + b"\n")
    return path


class Job:
    """`python -m pipeline.run` in its own process group. Its output goes to a file:
    a pipe nobody reads would fill up and stall the job."""

    def __init__(self, folder, run_id: str, argv: list[str]):
        self.folder, self.run_id = str(folder), run_id
        self.log = os.path.join(self.folder, f"job-{run_id}.log")
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "pipeline.run", "--run_id", run_id, "--summary", "false", *argv],
                cwd=self.folder, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                env={**os.environ, "PYTHONPATH": ROOT})
        self.started = time.time()

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def wait(self, timeout: float = 240) -> int:
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"job {self.run_id} still running after {timeout} s:\n{self.output()[-3000:]}")
        self.check_output()
        return code

    def kill(self) -> None:
        """SIGKILL, the whole group (the job and any worker it started)."""
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(30)

    def output(self) -> str:
        with open(self.log, encoding="utf-8", errors="replace") as handle:
            return handle.read()

    def check_output(self, *secrets: str) -> None:
        text = self.output()
        for value in RECIPIENTS + secrets:
            assert value not in text, f"{value[:3]}... appears in the job's log"

    def outcomes(self) -> list[dict]:
        return read_outputs(os.path.join(self.folder, "outcomes"), "outcomes", self.run_id)

    def dead_letters(self) -> list[dict]:
        return read_outputs(os.path.join(self.folder, "dead"), "dead-letters", self.run_id)


def job_argv(folder, source: str, destination: str, storage_options: dict | None, *extra: str) -> list[str]:
    argv = ["--input", source, "--destination", destination,
            "--outcomes", os.path.join(str(folder), "outcomes"), "--dead_letters", os.path.join(str(folder), "dead")]
    if storage_options is not None:
        argv += ["--storage_options", json.dumps(storage_options)]
    return argv + list(extra)


def read_outputs(folder: str, name: str, run_id: str) -> list[dict]:
    pattern = re.compile(rf"{re.escape(name)}-{re.escape(run_id)}-\d{{5}}-of-\d{{5}}\.jsonl")
    found = []
    for entry in sorted(os.listdir(folder)) if os.path.isdir(folder) else []:
        if pattern.fullmatch(entry):
            with open(os.path.join(folder, entry), encoding="utf-8") as handle:
                found += [json.loads(line) for line in handle]
    return found


def wait_for(condition, what: str, job: Job | None = None, timeout: float = 120, every: float = 0.05):
    deadline = time.monotonic() + timeout
    while not condition():
        if job is not None and not job.alive:
            raise AssertionError(f"job {job.run_id} ended (exit {job.process.returncode}) before {what}:\n"
                                 f"{job.output()[-3000:]}")
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} within {timeout} s")
        time.sleep(every)


# --- the stores, read back directly (never through a fault) -----------------------------

AUDIT = ("archive_index/", "archive_manifests/")  # what WriteAuditIndex writes beside the objects


class Bucket:
    def __init__(self, server, prefix: str):
        self.server = server
        self.name = server.create_bucket(f"{prefix}-{uuid.uuid4().hex[:8]}")
        self.url = f"s3://{self.name}"
        self._client = server.boto3_client()

    def keys(self) -> list[str]:
        """The archive objects (the audit index and manifests beside them are not audited here)."""
        pages = self._client.get_paginator("list_objects_v2").paginate(Bucket=self.name)
        return [o["Key"] for page in pages for o in page.get("Contents", []) if not o["Key"].startswith(AUDIT)]

    def count(self) -> int:
        return len(self.keys())

    def objects(self) -> dict[str, bytes]:
        keys = self.keys()
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            bodies = pool.map(lambda k: self._client.get_object(Bucket=self.name, Key=k)["Body"].read(), keys)
            return dict(zip(keys, bodies))


class Folder:
    """A local archive root: its objects, and the hidden files beside them."""

    def __init__(self, path):
        self.path = str(path)
        self.url = self.path

    def _files(self):
        for folder, _, names in os.walk(self.path):
            for name in names:
                yield os.path.relpath(os.path.join(folder, name), self.path), name.startswith(".")

    def keys(self) -> list[str]:
        return [key for key, hidden in self._files() if not hidden and not key.startswith(AUDIT)]

    def hidden(self) -> list[str]:
        return [key for key, hidden in self._files() if hidden]

    def count(self) -> int:
        return len(self.keys())

    def objects(self) -> dict[str, bytes]:
        found = {}
        for key in self.keys():
            with open(os.path.join(self.path, key), "rb") as handle:
                found[key] = handle.read()
        return found


def key_of(url: str) -> str:
    return "sent_messages/" + url.split("/sent_messages/", 1)[1]


def _refuse(constant):
    raise ValueError(f"not JSON: {constant}")


def strict_payload(key: str, data: bytes) -> dict:
    """The object's JSON, strictly (RFC 8259: UTF-8, no NaN or Infinity); raises otherwise."""
    raw = lz4.frame.decompress(data) if key.endswith(".lz4") else gzip.decompress(data) if key.endswith(".gz") \
        else data
    value = json.loads(raw.decode("utf-8"), parse_constant=_refuse)
    assert isinstance(value, dict)
    return value


def is_whole(key: str, data: bytes) -> bool:
    try:
        strict_payload(key, data)
    except Exception:
        return False
    return True


# --- the audit --------------------------------------------------------------------------

@dataclass
class Audit:
    messages: int
    outcomes: int
    archived: int
    existed: int
    failed: int
    lost: list[str]          # message ids neither archived whole nor dead-lettered whole
    duplicates: int          # message ids with more than one outcome
    corrupt: list[str]       # objects in the store that are not whole strict JSON

    def check(self) -> None:
        assert self.outcomes == self.messages, f"{self.outcomes} outcomes for {self.messages} inputs"
        assert self.duplicates == 0 and self.lost == [] and self.corrupt == [], self


def audit(lines: list[bytes], outcomes: list[dict], objects: dict[str, bytes],
          dead_letters: list[dict]) -> Audit:
    per_id = Counter(o.get("message_id") for o in outcomes)
    last = {o.get("message_id"): o for o in outcomes}
    kept = {letter["input"].encode() if "input" in letter else base64.b64decode(letter["input_base64"])
            for letter in dead_letters if letter.get("status") == "FAILED"}
    lost = []
    for line in lines:
        message_id = json.loads(line)["message_id"]
        outcome = last.get(message_id)
        if outcome is None:
            lost.append(message_id)
        elif outcome["status"] == "ARCHIVED":
            data = objects.get(key_of(outcome["url"]))
            if data is None or hashlib.sha256(data).hexdigest() != outcome["sha256"] \
                    or not is_whole(key_of(outcome["url"]), data):
                lost.append(message_id)
        elif outcome["status"] != "FAILED" or line not in kept:
            lost.append(message_id)
    return Audit(
        messages=len(lines), outcomes=len(outcomes),
        archived=sum(o["status"] == "ARCHIVED" for o in outcomes),
        existed=sum(o["status"] == "ARCHIVED" and bool(o.get("existed")) for o in outcomes),
        failed=sum(o["status"] == "FAILED" for o in outcomes),
        lost=lost, duplicates=sum(n > 1 for n in per_id.values()),
        corrupt=sorted(k for k, data in objects.items() if not is_whole(k, data)))


def moment(outcome: dict) -> float:
    """When the outcome left the job (epoch seconds): at or after its write's end, later
    while the job is held (an outcome waits for the job to take it)."""
    return dt.datetime.fromisoformat(outcome["at"]).timestamp()


def write_started(outcome: dict) -> float:
    """When the write began, or later (see `moment`)."""
    return moment(outcome) - (outcome.get("latency_ms") or 0) / 1000


def recovery_seconds(count, fault_ended: float, job: Job, what: str = "an object archived after the fault") -> float:
    """From the end of the fault to the first object archived after it: polls `count()`
    (objects archived so far) until it grows past its value now."""
    before = count()
    wait_for(lambda: count() > before, what, job, every=0.05)
    return time.time() - fault_ended


def archived_puts(proxy: FaultProxy, path: str = "") -> int:
    """Archive objects PUT (not the audit index and manifests written beside them)."""
    return sum(1 for r in proxy.requests if r.method == "PUT" and r.status == 200 and r.path.startswith(path)
               and "/sent_messages/" in r.path)


# --- faults the proxies do not have as one call -----------------------------------------

@dataclass
class ShareRule(Rule):
    """Answers `share` of the matching requests (spread evenly: with 0.5, every
    other one) and forwards the rest."""

    share: float = 1.0
    seen: int = 0

    def matches(self, method: str, path: str, query: str) -> bool:
        if not super().matches(method, path, query):
            return False
        self.seen += 1  # under the proxy's lock
        return math.floor(self.seen * self.share) > math.floor((self.seen - 1) * self.share)


class ThrottlingProxy(FaultProxy):
    def slow_down_share(self, share: float, method: str | None = None) -> ShareRule:
        """S3 throttling (503 SlowDown) on `share` of the matching requests, until cleared."""
        rule = ShareRule(status=503, body=s3_error_body("SlowDown", "Please reduce your request rate."),
                         headers={"Content-Type": "application/xml"}, remaining=None, method=method,
                         share=share)
        return self._add(rule)


def unavailable(proxy: FaultProxy) -> Rule:
    """The whole store down: every request answered 503 ServiceUnavailable, until cleared."""
    return proxy.s3_error(503, "ServiceUnavailable", "Service is unable to handle request.", count=None)


# --- 1. throttling bursts ---------------------------------------------------------------

def test_throttling_bursts_on_half_the_puts_fail_nothing(s3_server, tmp_path):
    bucket = Bucket(s3_server, "throttled")
    lines = message_lines("throttle", 1000)
    source = write_input(tmp_path, lines)
    with ThrottlingProxy(s3_server.endpoint_url) as proxy:
        job = Job(tmp_path, "throttled", job_argv(tmp_path, source, bucket.url, s3_server.storage_options(proxy.url)))
        wait_for(lambda: archived_puts(proxy) >= 50, "first objects", job)
        rule = proxy.slow_down_share(0.5, method="PUT")
        burst_started = time.time()
        time.sleep(5)  # the burst's length: the fault itself, not a wait for an event
        proxy.clear_rules()
        burst_ended = time.time()
        assert job.alive, "the job ended before the burst did: give it more input"
        recovery = recovery_seconds(lambda: archived_puts(proxy), burst_ended, job)
        code = job.wait()
        puts = proxy.count("PUT")
    outcomes = job.outcomes()
    result = audit(lines, outcomes, bucket.objects(), job.dead_letters())
    result.check()
    assert code == 0, job.output()[-3000:]
    assert (result.archived, result.failed) == (len(lines), 0)
    assert rule.hits >= 50 and rule.hits == rule.seen // 2  # the burst throttled every other PUT
    retried = [o for o in outcomes if o["attempts"] > 1]
    assert retried and all(burst_started - 1 <= moment(o) for o in retried)
    assert bucket.count() == len(lines)
    record_row("batch: throttling bursts", "503 SlowDown on every other PUT for 5 s", len(lines), len(result.lost),
               result.duplicates, result.failed, None, recovery,
               throttled_responses=rule.hits, puts=puts, retried_messages=len(retried),
               max_attempts=max(o["attempts"] for o in outcomes))


# --- 2. an outage shorter than the hold -------------------------------------------------

def test_an_outage_shorter_than_the_hold_fails_nothing_and_stops_the_reading(s3_server, tmp_path):
    bucket = Bucket(s3_server, "outage")
    lines = message_lines("outage", 1000)
    source = write_input(tmp_path, lines)
    max_in_flight, outage_s = 32, 30
    with FaultProxy(s3_server.endpoint_url) as proxy:
        # The default hold (300 s) and the default backoff (at most 10 s between attempts).
        job = Job(tmp_path, "outage", job_argv(tmp_path, source, bucket.url, s3_server.storage_options(proxy.url),
                                               "--max_in_flight", str(max_in_flight)))
        wait_for(lambda: archived_puts(proxy) >= 100, "first objects", job)
        unavailable(proxy)
        down = time.time()
        time.sleep(1)  # let the requests already past the proxy's rules come back
        settled = proxy.counts()
        writes_during = []  # sampled each second: distinct objects requested since `settled`
        while time.time() < down + outage_s:
            time.sleep(1)
            writes_during.append(sum(1 for (m, _) in proxy.counts() - settled if m == "PUT"))
        proxy.clear_rules()
        up = time.time()
        archived_before = archived_puts(proxy)
        assert job.alive, "the job ended during the outage"
        recovery = recovery_seconds(lambda: archived_puts(proxy), up, job)
        code = job.wait()
    outcomes = job.outcomes()
    result = audit(lines, outcomes, bucket.objects(), job.dead_letters())
    result.check()
    assert code == 0, job.output()[-3000:]
    assert (result.archived, result.failed) == (len(lines), 0)
    # Back-pressure: no write got a slot during the outage, so at most max_in_flight objects
    # were ever asked for while most of the input waited unread.
    assert max(writes_during) <= max_in_flight, writes_during
    assert not [o for o in outcomes if down + 1 < moment(o) < up]  # the job itself was held
    assert len(lines) - archived_before > 10 * max_in_flight
    # The hold, not the retry budget, kept them going.
    assert max(o["attempts"] for o in outcomes) > TRANSIENT_RETRIES + 1
    assert recovery <= 10 + 2  # at most one backoff (--retry_max_delay 10 s) late
    record_row("batch: outage shorter than the hold", f"every request 503 for {outage_s} s (hold 300 s)", len(lines),
               len(result.lost), result.duplicates, result.failed, None, recovery,
               max_in_flight=max_in_flight, objects_requested_during_outage=max(writes_during),
               unread_at_outage_end=len(lines) - archived_before,
               max_attempts=max(o["attempts"] for o in outcomes))


# --- 3. an outage longer than the hold, and the re-drive ---------------------------------

OUTAGE_REASON = re.compile(r"^failed to archive: (OutageTooLong: )?the store answered only transient errors for \d+ s, "
                           r"longer than the hold of 5 s; last error: .*ServiceUnavailable")


def test_an_outage_longer_than_the_hold_fails_with_its_reason_and_the_redrive_archives_all(s3_server, tmp_path):
    bucket = Bucket(s3_server, "long-outage")
    lines = message_lines("long-outage", 150)
    source = write_input(tmp_path, lines)
    with FaultProxy(s3_server.endpoint_url) as proxy:
        unavailable(proxy)
        down = time.time()
        job = Job(tmp_path, "held", job_argv(tmp_path, source, bucket.url, s3_server.storage_options(proxy.url),
                                             "--hold_seconds", "5", "--retry_base_delay", "0.05",
                                             "--retry_max_delay", "0.5"))
        code = job.wait()
        proxy.clear_rules()
        up = time.time()
        assert proxy.count() > 0 and archived_puts(proxy) == 0
    outcomes, dead = job.outcomes(), job.dead_letters()
    assert code == 3, job.output()[-3000:]
    assert up - down > 5  # longer than the hold
    assert len(outcomes) == len(lines) and {o["status"] for o in outcomes} == {"FAILED"}
    assert {o["error_class"] for o in outcomes} == {"throttled"}
    assert all(OUTAGE_REASON.match(o["error"]) for o in outcomes), outcomes[0]["error"]
    assert sorted(base64.b64decode(d["input_base64"]) if "input_base64" in d else d["input"].encode()
                  for d in dead) == sorted(lines)
    assert all(d["status"] == "FAILED" and OUTAGE_REASON.match(d["reason"]) for d in dead)
    assert bucket.count() == 0
    assert f"{len(lines)} message(s) failed to archive" in job.output()

    # The store is back: the documented re-drive archives every one of them...
    letters = os.path.join(str(tmp_path), "dead", "dead-letters-*.jsonl")
    redrive_argv = ["--input_format", "dead_letters", "--input", letters,
                    "--destination", bucket.url, "--storage_options", json.dumps(s3_server.storage_options()),
                    "--outcomes", os.path.join(str(tmp_path), "outcomes"),
                    "--dead_letters", os.path.join(str(tmp_path), "dead")]
    first = Job(tmp_path, "redrive-1", redrive_argv)
    recovery = recovery_seconds(bucket.count, up, first, "the first re-driven object")
    assert first.wait() == 0, first.output()[-3000:]
    redriven = first.outcomes()
    stored = bucket.objects()
    result = audit(lines, redriven, stored, [])
    result.check()
    assert (result.archived, result.existed) == (len(lines), 0)
    # ...and a second re-drive changes nothing: every object is found, byte for byte.
    second = Job(tmp_path, "redrive-2", redrive_argv)
    assert second.wait() == 0, second.output()[-3000:]
    again = second.outcomes()
    assert audit(lines, again, bucket.objects(), []).existed == len(lines)
    assert bucket.objects() == stored
    record_row("batch: outage longer than the hold, then re-drive",
               f"every request 503 for {up - down:.0f} s (hold 5 s); re-drive after", len(lines),
               len(result.lost), result.duplicates, len(outcomes), None, recovery,
               failed_then_redriven=len(outcomes), second_redrive_existed=len(again))


# --- 4. resets, half-open and refused connections ---------------------------------------



def reset_storm(proxy: toxiproxy.Proxy, seconds: float) -> None:
    """Each second, a third of the open and new connections are reset (TCP RST) as their
    request arrives, and a third as their answer starts (the PUT was taken, its answer lost)."""
    ends = time.monotonic() + seconds
    while time.monotonic() < ends:
        names = [proxy.add_reset_peer(stream="downstream", toxicity=0.33),
                 proxy.add_reset_peer(stream="upstream", toxicity=0.33)]
        time.sleep(1)
        for name in names:
            proxy.remove_toxic(name)


def half_open(proxy: toxiproxy.Proxy, seconds: float) -> None:
    """Connections are accepted (and open ones stay open) but nothing is answered."""
    name = proxy.add_timeout(0)
    time.sleep(seconds)
    proxy.remove_toxic(name)


def refused(proxy: toxiproxy.Proxy, seconds: float) -> None:
    """Nothing listens: open connections are closed, new ones refused."""
    proxy.set_enabled(False)
    time.sleep(seconds)
    proxy.set_enabled(True)


READ_TIMEOUT_S = 2  # set in the test's storage options; s3fs' own default is 15 s


@pytest.mark.parametrize("fault, seconds, count, injected", [
    pytest.param(reset_storm, 5, 1500, "TCP resets on 1/3 of connections, as requests arrive and as answers start, "
                                 "for 5 s", id="resets"),
    pytest.param(half_open, 8, 700, f"half-open: connections accepted, never answered, for 8 s "
                               f"(read_timeout {READ_TIMEOUT_S} s)", id="half-open"),
    pytest.param(refused, 4, 700, "connections refused for 4 s", id="refused"),
])
def test_connection_faults_lose_nothing(s3_server, toxi, tmp_path, fault, seconds, count, injected):
    bucket = Bucket(s3_server, "conn")
    lines = message_lines(f"conn-{fault.__name__}", count)
    source = write_input(tmp_path, lines)
    proxy = toxi.create_proxy(f"s3-{uuid.uuid4().hex[:8]}", upstream=s3_server.endpoint_url.split("://", 1)[1])
    try:
        options = s3_server.storage_options(f"http://{proxy.listen}")
        # A half-open connection is only given up by a read timeout: a short one keeps the test short.
        options["config_kwargs"] = {"connect_timeout": READ_TIMEOUT_S, "read_timeout": READ_TIMEOUT_S}
        job = Job(tmp_path, "conn", job_argv(tmp_path, source, bucket.url, options))
        wait_for(lambda: bucket.count() >= 50, "first objects", job, every=0.2)
        started = time.time()
        fault(proxy, seconds)
        ended = time.time()
        assert job.alive, "the job ended before the fault did: give it more input"
        recovery = recovery_seconds(bucket.count, ended, job)
        code = job.wait()
    finally:
        proxy.delete()
    outcomes = job.outcomes()
    result = audit(lines, outcomes, bucket.objects(), job.dead_letters())
    result.check()
    assert code == 0, job.output()[-3000:]
    assert (result.archived, result.failed) == (len(lines), 0)
    hit = [o for o in outcomes if o["attempts"] > 1]
    assert hit and all(moment(o) >= started - 1 for o in hit)  # retried, and only because of the fault
    if fault is half_open:
        # A silent connection is given up after the read timeout and the write tried again: no
        # attempt outlives the timeout waiting for an answer that never comes.
        stuck = [o["latency_ms"] for o in outcomes
                 if o["attempts"] == 1 and o["latency_ms"] > (READ_TIMEOUT_S + 1.5) * 1000]
        assert stuck == [], f"{len(stuck)} writes waited up to {max(stuck) / 1000:.1f} s in one attempt"
        assert max(o["latency_ms"] for o in hit) >= READ_TIMEOUT_S * 1000
    record_row(f"batch: connections: {fault.__name__.replace('_', ' ')}", injected, len(lines), len(result.lost),
               result.duplicates, result.failed, None, recovery,
               retried_messages=len(hit), found_existing=result.existed,
               max_attempts=max(o["attempts"] for o in outcomes),
               max_latency_s=round(max(o["latency_ms"] for o in outcomes) / 1000, 1))


def test_an_s3_write_waits_at_most_the_read_timeout_for_an_answer(s3_server):
    """s3fs gives its client a 15 s read timeout (botocore's own is 60 s) and the product
    keeps it. It bounds an attempt only if the body is sent without waiting: aiohttp
    starts the read timer once the body is out, and botocore's `Expect: 100-continue`
    (on every PutObject) would make it wait for a "100 Continue" first, unbounded: on a
    silent connection, forever. So the product's PUTs carry no Expect header."""
    bucket = s3_server.create_bucket(f"expect-{uuid.uuid4().hex[:8]}")
    with FaultProxy(s3_server.endpoint_url) as proxy:
        spec = StoreSpec(f"s3://{bucket}", s3_server.storage_options(proxy.url))
        store = spec.open()
        try:
            result = store.write("sent_messages/a.json", b"{}",
                                 ObjectMetadata(sha256=hashlib.sha256(b"{}").hexdigest()))
        finally:
            store.close()
        [put] = [r for r in proxy.requests if r.method == "PUT"]
    assert result.ok, result
    assert "expect" not in {name.lower() for name in put.headers}, put.headers
    config = store.fs.s3.meta.config
    assert (config.connect_timeout, config.read_timeout) == (5, 15)
    assert config.max_pool_connections == 64 and config.retries["total_max_attempts"] == 1


# --- 5. a slow store --------------------------------------------------------------------

def test_a_slow_store_is_written_at_max_in_flight_per_request_time(s3_server, tmp_path):
    bucket = Bucket(s3_server, "slow")
    max_in_flight, latency = 64, 2.0
    lines = message_lines("slow", 5 * max_in_flight)
    source = write_input(tmp_path, lines)
    with FaultProxy(s3_server.endpoint_url) as proxy:
        proxy.set_latency(latency)
        job = Job(tmp_path, "slow", job_argv(tmp_path, source, bucket.url, s3_server.storage_options(proxy.url),
                                             "--max_in_flight", str(max_in_flight)))
        code = job.wait()
        requests = sum(1 for r in proxy.requests if "/sent_messages/" in r.path)
    outcomes = job.outcomes()
    result = audit(lines, outcomes, bucket.objects(), job.dead_letters())
    result.check()
    assert code == 0, job.output()[-3000:]
    assert (result.archived, result.failed) == (len(lines), 0)
    assert requests == len(lines)  # one conditional PUT per object (the audit index's requests aside)
    span = max(moment(o) for o in outcomes) - min(write_started(o) for o in outcomes)
    throughput, expected = len(lines) / span, max_in_flight / latency
    assert 0.6 * expected <= throughput <= 1.05 * expected, (throughput, expected)
    record_row("batch: slow store", f"{latency:.0f} s per request, max_in_flight {max_in_flight}", len(lines),
               len(result.lost), result.duplicates, result.failed, None, None,
               throughput_per_s=round(throughput, 1), expected_per_s=expected,
               p50_latency_s=round(statistics.median(o["latency_ms"] for o in outcomes) / 1000, 2))


# --- 6. one tenant's credentials revoked and restored -----------------------------------

def tenant_user(server, name: str, bucket: Bucket) -> tuple[dict, Callable[[], None], Callable[[], None]]:
    """An IAM user allowed only its tenant's bucket; (storage options, revoke, restore)."""
    iam = server.boto3_client("iam")
    user = f"{name}-{uuid.uuid4().hex[:6]}"
    policy = json.dumps({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Action": "s3:*",
        "Resource": [f"arn:aws:s3:::{bucket.name}", f"arn:aws:s3:::{bucket.name}/*"]}]})
    iam.create_user(UserName=user)
    iam.put_user_policy(UserName=user, PolicyName="archive", PolicyDocument=policy)
    key = iam.create_access_key(UserName=user)["AccessKey"]
    options = {"key": key["AccessKeyId"], "secret": key["SecretAccessKey"]}
    # moto ignores an access key's Inactive status; it does evaluate policies.
    return (options,
            lambda: iam.delete_user_policy(UserName=user, PolicyName="archive"),
            lambda: iam.put_user_policy(UserName=user, PolicyName="archive", PolicyDocument=policy))


def two_tenant_run(server, tmp_path, run_id: str, lines, proxy, fault=None):
    """Run the job over two tenants' buckets, each with its own IAM user; `fault(revoke,
    restore, job, bucket)` acts on acme's while it runs. Returns (job, exit code,
    buckets, credentials, what `fault` returned)."""
    buckets, secrets, controls = {}, [], {}
    destinations = {}
    for tenant in ("acme", "globex"):
        bucket = buckets[tenant] = Bucket(server, tenant)
        credentials, revoke, restore = tenant_user(server, tenant, bucket)
        secrets += [credentials["key"], credentials["secret"]]
        controls[tenant] = (revoke, restore)
        destinations[tenant] = {"profile": "clevertap", "destinations": [{"url": bucket.url, "storage_options": {
            **credentials, "client_kwargs": {"endpoint_url": proxy.url, "region_name": server.region}}}]}
    tenants = os.path.join(str(tmp_path), f"tenants-{run_id}.json")
    with open(tenants, "w") as handle:
        json.dump({"tenants": destinations}, handle)
    source = write_input(tmp_path, lines, f"in-{run_id}.jsonl")
    job = Job(tmp_path, run_id, ["--input", source, "--tenants", tenants, "--breaker_cooldown", "2",
                                 "--outcomes", os.path.join(str(tmp_path), "outcomes"),
                                 "--dead_letters", os.path.join(str(tmp_path), "dead")])
    window = fault(*controls["acme"], job, buckets["acme"]) if fault else None
    code = job.wait()
    job.check_output(*secrets)
    return job, code, buckets, secrets, window


def tenant_pace(outcomes: list[dict], tenant: str) -> tuple[float, float]:
    """(messages per second, p50 write latency in ms) of one tenant's ARCHIVED outcomes."""
    mine = [o for o in outcomes if o["tenant"] == tenant and o["status"] == "ARCHIVED"]
    span = max(moment(o) for o in mine) - min(write_started(o) for o in mine)
    return len(mine) / span, statistics.median(o["latency_ms"] for o in mine)


def test_revoked_credentials_open_one_tenants_breaker_only_and_it_closes_after_restore(s3_auth_server, tmp_path):
    server, revoked_s, cooldown = s3_auth_server, 4.0, 2.0
    lines = message_lines("tenants", 2400, tenants=("acme", "globex"))
    by_tenant = {t: [line for line in lines if json.loads(line)["tenant"] == t] for t in ("acme", "globex")}

    def revoke_for_a_while(revoke, restore, job, bucket):
        wait_for(lambda: archived_puts(proxy, f"/{bucket.name}/") >= 50, "acme's first objects", job)
        revoke()
        revoked_at = time.time()
        time.sleep(revoked_s)  # the revocation's length: the fault itself
        restore()
        restored_at = time.time()
        assert job.alive, "the job ended before the credentials came back: give it more input"
        recovery = recovery_seconds(lambda: archived_puts(proxy, f"/{bucket.name}/"), restored_at, job,
                                    "acme's first object after the restore")
        return revoked_at, restored_at, recovery

    with FaultProxy(server.endpoint_url) as proxy:  # no fault: it counts each bucket's requests
        baseline_job, code, _, _, _ = two_tenant_run(server, tmp_path, "baseline", lines, proxy)
        assert code == 0, baseline_job.output()[-3000:]
        proxy.reset()
        job, code, buckets, secrets, (revoked_at, restored_at, recovery) = two_tenant_run(
            server, tmp_path, "revoked", lines, proxy, revoke_for_a_while)
        refusals = [r for r in proxy.requests if r.status == 403]
    outcomes, dead = job.outcomes(), job.dead_letters()
    assert code == 3, job.output()[-3000:]
    stored = {**buckets["acme"].objects(), **buckets["globex"].objects()}
    result = audit(lines, outcomes, stored, dead)
    result.check()
    acme = [o for o in outcomes if o["tenant"] == "acme"]
    globex = [o for o in outcomes if o["tenant"] == "globex"]
    # The other tenant: every message archived, not slowed.
    assert [o["status"] for o in globex] == ["ARCHIVED"] * len(by_tenant["globex"])
    (pace, p50), (base_pace, base_p50) = tenant_pace(outcomes, "globex"), tenant_pace(baseline_job.outcomes(), "globex")
    assert pace >= 0.6 * base_pace and p50 <= 2 * base_p50 + 20, (pace, base_pace, p50, base_p50)
    # The revoked tenant: FAILED as auth, most of them by the open breaker without a request.
    failed = [o for o in acme if o["status"] == "FAILED"]
    assert failed and {o["error_class"] for o in failed} == {"auth"}
    fast = [o for o in failed if o["attempts"] == 0 and "circuit open" in o["error"]]
    assert len(fast) > len(failed) / 2, (len(fast), len(failed))
    assert all(revoked_at - 1 <= moment(o) <= restored_at + cooldown + 5 for o in failed)
    probes = math.ceil(revoked_s / cooldown) + 1
    assert refusals and all(r.path.startswith(f"/{buckets['acme'].name}/") for r in refusals)
    assert len(refusals) <= 4 * (64 + probes)  # the writes in flight when it opened, and the probes: 4 attempts each
    # After the restore and the cooldown, acme's writes succeed again.
    assert recovery <= cooldown + 3
    # (How many of acme's messages are left by then depends on how fast the open breaker
    # failed the rest: every one decided after the cooldown is archived, at least one.)
    settled = [o for o in acme if moment(o) > restored_at + cooldown + 5]
    assert sum(o["status"] == "ARCHIVED" and moment(o) > restored_at for o in acme) >= 1
    assert all(o["status"] == "ARCHIVED" for o in settled), [o["status"] for o in settled][:10]
    assert {json.loads(d["input"])["tenant"] for d in dead} == {"acme"} and len(dead) == len(failed)
    text = json.dumps(outcomes) + json.dumps(dead)
    assert not any(secret in text for secret in secrets)
    record_row("batch: credentials revoked for one tenant", f"acme's IAM policy removed for {revoked_s:.0f} s "
               f"(breaker cooldown {cooldown:.0f} s); globex untouched", len(lines), len(result.lost),
               result.duplicates, result.failed, None, recovery,
               failed_without_request=len(fast), refused_requests=len(refusals),
               other_tenant_per_s=round(pace, 1), other_tenant_per_s_without_fault=round(base_pace, 1),
               other_tenant_p50_ms=round(p50, 1), other_tenant_p50_ms_without_fault=round(base_p50, 1))


# --- 7. SIGKILL mid-run, then the same run again ----------------------------------------

@pytest.mark.parametrize("store, count, kill_after", [
    pytest.param("local", 12000, 3000, id="local-disk"),
    pytest.param("s3", 800, 200, id="s3"),
])
def test_a_killed_run_leaves_only_whole_objects_and_its_rerun_finds_them(s3_server, tmp_path, store, count,
                                                                          kill_after):
    target = Folder(tmp_path / "archive") if store == "local" else Bucket(s3_server, "killed")
    options = None if store == "local" else s3_server.storage_options()
    lines = message_lines(f"killed-{store}", count)
    source = write_input(tmp_path, lines)
    argv = job_argv(tmp_path, source, target.url, options)
    killed = Job(tmp_path, "killed", argv)
    wait_for(lambda: target.count() >= kill_after, f"{kill_after} objects", killed, every=0.02)
    assert killed.alive
    killed.kill()
    killed_at = time.time()
    # A PUT the server had whole when the job died still lands: wait for the listing to settle.
    listings = [target.keys()]
    while len(listings) < 2 or listings[-1] != listings[-2]:
        time.sleep(0.5)
        listings.append(target.keys())
    before = target.objects()
    assert kill_after <= len(before) < count
    assert all(is_whole(key, data) for key, data in before.items())  # nothing half-written is visible
    assert killed.outcomes() == []
    leftovers = target.hidden() if store == "local" else []
    # A write killed between its temporary file and its link leaves that file, hidden beside the key.
    assert all(re.fullmatch(r"\..+\.json\.lz4\.[0-9a-f]{32}\.tmp", os.path.basename(k)) for k in leftovers)

    rerun = Job(tmp_path, "rerun", argv)
    recovery = recovery_seconds(target.count, killed_at, rerun, "the re-run's first object")
    assert rerun.wait() == 0, rerun.output()[-3000:]
    outcomes = rerun.outcomes()
    after = target.objects()
    result = audit(lines, outcomes, after, rerun.dead_letters())
    result.check()
    assert (result.archived, result.failed) == (len(lines), 0)
    # The re-run found exactly the objects the killed run had written, with the same bytes.
    assert {key_of(o["url"]) for o in outcomes if o.get("existed")} == set(before)
    assert {k: after[k] for k in before} == before and len(after) == len(lines)
    assert all(re.fullmatch(r"sent_messages/(Email|Push|Sms)/\d{6}/\d+/[0-9a-f]{32}/[\w-]+\.json\.lz4", k)
               for k in after)
    record_row(f"batch: SIGKILL mid-run, re-run ({store})", f"kill -9 after {len(before):,} of {count:,} objects",
               len(lines), len(result.lost), result.duplicates, result.failed, None,
               recovery, objects_before_kill=len(before),
               rerun_existed=result.existed, hidden_temp_files_left=len(leftovers))


# --- 8. memory under a backlog ----------------------------------------------------------

def tree_rss(process: psutil.Process) -> int:
    total = 0
    for member in [process, *process.children(recursive=True)]:
        try:
            total += member.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total


def test_memory_stays_bounded_with_a_backlog_behind_a_slow_store(s3_server, tmp_path):
    bucket = Bucket(s3_server, "backlog")
    backlog, max_in_flight, latency, window_s, warm_up_s = 100_000, 64, 1.0, 60, 10
    source = write_input(tmp_path, message_lines("backlog", backlog))
    with FaultProxy(s3_server.endpoint_url) as proxy:
        proxy.set_latency(latency)
        job = Job(tmp_path, "backlog", job_argv(tmp_path, source, bucket.url, s3_server.storage_options(proxy.url),
                                                "--max_in_flight", str(max_in_flight)))
        process = psutil.Process(job.process.pid)
        wait_for(lambda: proxy.count("PUT") > 0, "the first write", job, every=0.2)
        writing = time.monotonic()
        samples = []  # (seconds since the first write, RSS bytes)
        while time.monotonic() - writing < window_s:
            assert job.alive, job.output()[-3000:]
            samples.append((time.monotonic() - writing, tree_rss(process)))
            time.sleep(1)
        written = archived_puts(proxy)
        job.kill()
    job.check_output()
    warm = [rss for at, rss in samples if at >= warm_up_s]
    growth = max(warm) - warm[0]
    # Bounded: 64 writes in flight (a few KB each) and the outcomes of a minute
    # (~4,000, ~1 KB each) are a few MB; reading the backlog ahead would be 100,000
    # prepared messages, hundreds of MB.
    assert growth < 50 * 2**20, [round(rss / 2**20) for _, rss in samples]
    assert written < 0.1 * backlog  # the backlog was still waiting: this was a backlog
    client = s3_server.boto3_client()
    for key in bucket.keys()[::50]:  # a sample: what was written while held is whole
        assert is_whole(key, client.get_object(Bucket=bucket.name, Key=key)["Body"].read())
    record_row("batch: memory under a backlog", f"{backlog:,} messages waiting, {latency:.0f} s per request, "
               f"max_in_flight {max_in_flight}, sampled {window_s} s", backlog, None, None, None, None, None,
               rss_after_warm_up_mb=round(warm[0] / 2**20, 1), rss_peak_mb=round(max(warm) / 2**20, 1),
               rss_growth_mb=round(growth / 2**20, 1), written_in_window=written)
