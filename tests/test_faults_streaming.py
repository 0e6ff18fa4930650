"""The streaming fault suite (issue 9): the Kafka job under crashes and store faults.

Each scenario runs the job as a user does (`python -m pipeline.run --kafka_topic ...`
on Prism) against a real Kafka broker and moto (S3) on 127.0.0.1, injects one
fault while messages flow, then audits everything that came out and records
its row of figures (tests.reliability):

    Publisher ─> input topic ─> job ─┬─> deliveries ─┐
    (id, tenant, publish time)       ├─> failures ───┼─> Outputs (read back, with append times) ─┐
                                     └─> outcomes ───┘                                          ├─> audit
                                      bucket objects (their sha256) ────────────────────────────┘

lost: a published message with no delivery, no failure record and no archived
object once the job has caught up. Delivered without archive: a delivery whose
object is missing or holds other bytes than its ARCHIVED outcome says, or a
delivery of a message with no ARCHIVED outcome. Duplicates: deliveries of one
message beyond the first (at-least-once after a crash: bounded by what was in
flight, and each the same object).

The output topics stamp LogAppendTime, so a record's timestamp is the moment
it became durable: recovery times and latencies are read from those stamps
(the broker's clock is this machine's).
"""

from __future__ import annotations

import collections
import glob
import hashlib
import json
import os
import signal
import threading
import time
import uuid
from dataclasses import dataclass, field

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

from devservers import kafka
from devservers.faultproxy import FaultProxy
from tests.reliability import record_row
from tests.test_pipeline import clevertap_records
from tests.test_streaming import StreamingJob, committed_offsets

OUTPUTS = ("deliveries", "failures", "outcomes")
APPEND_TIME = {"message.timestamp.type": "LogAppendTime"}


@pytest.fixture(scope="module")
def broker():
    with kafka.start() as server:
        yield server


# --- what goes in ------------------------------------------------------------------------

@dataclass(frozen=True)
class Message:
    message_id: str
    tenant: str | None
    data: bytes


def outbound(count: int, prefix: str, tenants=(None,)) -> list[Message]:
    """`count` valid messages over every clevertap channel; every other group of
    four has no sent_at (the Kafka timestamp stands for it, so a replay writes the
    same bytes), and the tenants take turns in groups of eight."""
    records = clevertap_records()
    made = []
    for i in range(count):
        record = {**records[i % len(records)], "message_id": f"{prefix}-{i}"}
        if (i // 4) % 2:
            del record["sent_at"]
        tenant = tenants[(i // 8) % len(tenants)]
        if tenant is not None:
            record["tenant"] = tenant
        made.append(Message(record["message_id"], tenant, json.dumps(record).encode()))
    return made


class Publisher:
    """Publishes messages at a steady rate from a thread (idempotent producer: a
    broker crash does not duplicate the input); remembers each message's publish
    time, its Kafka CreateTime in ms."""

    def __init__(self, broker, topic: str):
        self._producer = Producer({"bootstrap.servers": broker.bootstrap_servers, "acks": "all",
                                   "enable.idempotence": True, "linger.ms": 5, "log_level": 0})
        self._topic = topic
        self.published: dict[str, tuple[Message, int]] = {}  # id -> (message, publish ms)
        self.errors: list = []
        self._thread: threading.Thread | None = None
        self._halt = threading.Event()

    def start(self, messages: list[Message], rate: float) -> "Publisher":
        self.join()
        self._thread = threading.Thread(target=self._run, args=(messages, rate), daemon=True)
        self._thread.start()
        return self

    def _run(self, messages, rate):
        started = time.monotonic()
        for i, message in enumerate(messages):
            if self._halt.wait(max(0.0, started + i / rate - time.monotonic())):
                break
            self._producer.produce(self._topic, message.data, on_delivery=self._acked(message))
            self._producer.poll(0)
        deadline = time.monotonic() + 150  # longer than any outage here; close() cuts it short
        while self._producer.flush(0.5) and not self._halt.is_set() and time.monotonic() < deadline:
            pass

    def _acked(self, message):
        def acked(error, record):
            if error is not None:
                self.errors.append(error)
            else:
                self.published[message.message_id] = (message, record.timestamp()[1])
        return acked

    def join(self, timeout: float = 180) -> None:
        if self._thread is not None:
            self._thread.join(timeout)
            assert not self._thread.is_alive(), "the publisher did not finish"
            self._thread = None

    def close(self) -> None:
        self._halt.set()
        self.join()


# --- what comes out ----------------------------------------------------------------------

@dataclass(frozen=True)
class Output:
    key: str
    value: bytes
    headers: dict
    append_ms: int


class Outputs:
    """Reads the job's three output topics from their start, in a thread, as
    delivery would (an assigned consumer: no group to rejoin after a broker crash)."""

    def __init__(self, broker, topics: dict[str, str]):
        self._consumer = Consumer({"bootstrap.servers": broker.bootstrap_servers,
                                   "group.id": f"audit-{uuid.uuid4().hex}", "enable.auto.commit": False,
                                   "log_level": 0})
        self._consumer.assign([TopicPartition(t, 0, OFFSET_BEGINNING) for t in topics.values()])
        self._names = {topic: name for name, topic in topics.items()}
        self._lock = threading.Lock()
        self._seen: dict[str, list[Output]] = {name: [] for name in topics}
        self._halt = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._halt.is_set():
            for record in self._consumer.consume(500, 0.2):
                if record.error() is not None:
                    continue
                seen = Output((record.key() or b"").decode("utf-8", "replace"), record.value() or b"",
                              {k: v.decode("utf-8", "replace") for k, v in record.headers() or []},
                              record.timestamp()[1])
                with self._lock:
                    self._seen[self._names[record.topic()]].append(seen)

    def __getitem__(self, name: str) -> list[Output]:
        with self._lock:
            return list(self._seen[name])

    def outcomes(self) -> list[tuple[dict, int]]:
        return [(json.loads(o.value), o.append_ms) for o in self["outcomes"]]

    def close(self):
        self._halt.set()
        self._thread.join(10)
        self._consumer.close()


def output_topics(broker, prefix: str) -> dict[str, str]:
    topics = {name: f"{prefix}-{name}" for name in OUTPUTS}
    for topic in topics.values():
        broker.create_topic(topic, partitions=1, config=APPEND_TIME)
    return topics


# --- the job -----------------------------------------------------------------------------

class Job(StreamingJob):
    """The streaming job as a user starts it; `crash()` SIGKILLs its whole process
    tree (the launcher with its SDK harness, and Prism) and waits until every one
    of those processes is gone."""

    def crash(self) -> list[int]:
        process, self.process = self.process, None
        if process is None:
            return []
        tree = process_tree(process.pid)
        for pid in tree:            # stopped first: none can start a child while we kill
            _signal(pid, signal.SIGSTOP)
        tree = process_tree(process.pid)
        _kill_group(process.pid)
        for pid in tree:
            _signal(pid, signal.SIGKILL)
        process.wait(30)
        deadline = time.monotonic() + 30
        while any(_alive(pid) for pid in tree):
            assert time.monotonic() < deadline, f"still alive after SIGKILL: {[p for p in tree if _alive(p)]}"
            time.sleep(0.05)
        return tree

    def close(self):
        self.crash()
        self.log.close()


def process_tree(root: int) -> list[int]:
    """`root` and all its descendants, from /proc."""
    children = collections.defaultdict(list)
    for stat in glob.glob("/proc/[0-9]*/stat"):
        try:
            with open(stat) as handle:
                ppid = int(handle.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children[ppid].append(int(stat.split("/")[2]))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, ()))
    return tree


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


# --- the audit ---------------------------------------------------------------------------

@dataclass
class Audit:
    messages: int
    lost: list[str]
    duplicates: int
    failed: dict[str, dict]                     # id -> its FAILED outcome
    delivered_without_archive: list[str]
    deliveries: dict[str, list[Output]] = field(repr=False)
    archived: dict[str, list[dict]] = field(repr=False)


def bucket_objects(s3, bucket: str) -> dict[str, bytes]:
    """Every object of `bucket`, URL -> bytes."""
    found = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for entry in page.get("Contents", ()):
            found[f"s3://{bucket}/{entry['Key']}"] = s3.get_object(Bucket=bucket, Key=entry["Key"])["Body"].read()
    return found


def message_id_of(url: str) -> str:
    return url.rsplit("/", 1)[1].split(".", 1)[0]


def audit(published: dict, outputs: Outputs, objects: dict[str, bytes]) -> Audit:
    deliveries = collections.defaultdict(list)
    for record in outputs["deliveries"]:
        deliveries[record.key].append(record)
    held = {record.key for record in outputs["failures"]}
    archived, failed = collections.defaultdict(list), {}
    for outcome, _ in outputs.outcomes():
        if outcome["status"] == "ARCHIVED":
            archived[outcome["message_id"]].append(outcome)
        elif outcome["status"] == "FAILED":
            failed[outcome["message_id"]] = outcome
    stored = {message_id_of(url) for url in objects}
    lost = sorted(m for m in published if m not in deliveries and m not in held and m not in stored)
    unarchived = []
    for message_id, records in deliveries.items():
        by_url = {o["url"]: o["sha256"] for o in archived.get(message_id, ())}
        for record in records:
            url = record.headers.get("archive_url")
            body = objects.get(url)
            if (record.headers.get("archive_status") != "ARCHIVED" or url not in by_url or body is None
                    or hashlib.sha256(body).hexdigest() != by_url[url]):
                unarchived.append(message_id)
    duplicates = sum(len(records) - 1 for records in deliveries.values())
    return Audit(len(published), lost, duplicates, failed, unarchived, dict(deliveries), dict(archived))


def assert_duplicates_are_one_object(result: Audit) -> None:
    """A replay re-finds its object: every delivery and every ARCHIVED outcome of
    one message names the same URL and the same sha256."""
    for message_id, records in result.deliveries.items():
        assert len({r.headers.get("archive_url") for r in records}) == 1, message_id
        assert len({(o["url"], o["sha256"]) for o in result.archived[message_id]}) == 1, message_id


def wait_until(condition, timeout: float, what: str, every: float = 0.2):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out after {timeout:.0f} s waiting for {what}"
        time.sleep(every)


def settle(condition, timeout: float, every: float = 0.2) -> bool:
    """Wait (bounded) for `condition`; whether it came. The audit then says what is missing."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(every)
    return True


def caught_up(publisher: Publisher, outputs: Outputs, expected: int):
    """Every published message has an outcome and a delivery or failure record."""
    def done() -> bool:
        if len(publisher.published) < expected:
            return False
        decided = {r.key for r in outputs["deliveries"]} | {r.key for r in outputs["failures"]}
        outcomes = {o["message_id"] for o, _ in outputs.outcomes()}
        return all(m in decided and m in outcomes for m in publisher.published)
    return done


def backlog_drained(publisher: Publisher, outputs: Outputs, wall_seconds: float) -> float | None:
    """Seconds from `wall_seconds` until every message published before it had its
    first delivery or failure record (what the fault held back, worked off)."""
    first = {}
    for record in outputs["deliveries"] + outputs["failures"]:
        first[record.key] = min(first.get(record.key, record.append_ms), record.append_ms)
    before = [m for m, (_, ms) in publisher.published.items() if ms < wall_seconds * 1000]
    if not before or any(m not in first for m in before):
        return None
    return round(max(0.0, max(first[m] for m in before) / 1000 - wall_seconds), 1)


def first_append_after(records: list[Output], wall_seconds: float) -> float | None:
    """Seconds from `wall_seconds` to the first record appended after it."""
    after = [r.append_ms for r in records if r.append_ms >= wall_seconds * 1000]
    return (min(after) / 1000 - wall_seconds) if after else None


# --- 1. the job killed -------------------------------------------------------------------

def test_a_sigkilled_job_restarted_from_committed_offsets_loses_nothing(broker, s3_server):
    topic = broker.create_topic(f"crash-{uuid.uuid4().hex[:8]}", partitions=2)
    bucket = s3_server.create_bucket(f"crash-{uuid.uuid4().hex[:8]}")
    topics = output_topics(broker, topic)
    messages = outbound(720, "crash")
    first = Job(broker, s3_server, bucket, topic, create_topics=False)
    restarted = Job(broker, s3_server, bucket, topic, create_topics=False)
    publisher, outputs = Publisher(broker, topic), Outputs(broker, topics)
    try:
        first.start()
        publisher.start(messages, rate=60)
        wait_until(lambda: len(outputs["deliveries"]) >= 150, 120, "the first deliveries")
        killed = first.crash()
        committed, ends = committed_offsets(broker, f"{topic}-group", topic)
        in_flight = sum(ends.values()) - sum(max(0, c) for c in committed.values())
        restarted.start()
        restart_at = time.time()
        publisher.join()
        caught = settle(caught_up(publisher, outputs, len(messages)), 120)
        result = audit(publisher.published, outputs, bucket_objects(s3_server.boto3_client(), bucket))
    finally:
        publisher.close()
        first.close()
        restarted.close()
        outputs.close()
    recovery = first_append_after(outputs["deliveries"], restart_at)
    existed = sum(1 for o, _ in outputs.outcomes() if o["status"] == "ARCHIVED" and o.get("existed"))
    record_row("streaming: job SIGKILLed mid-stream, restarted",
               f"kill -9 of the job's {len(killed)} processes (launcher + SDK harness, Prism) after "
               "150 deliveries; same command restarted", result.messages, len(result.lost),
               result.duplicates, len(result.failed), len(result.delivered_without_archive), recovery,
               in_flight_at_kill=in_flight, replays_found_existing=existed,
               backlog_drained_s=backlog_drained(publisher, outputs, restart_at))
    assert not publisher.errors
    assert len(killed) >= 2                     # the launcher and Prism at least
    assert result.messages == len(messages)
    assert result.lost == [] and result.delivered_without_archive == [] and result.failed == {}
    assert caught
    assert set(result.deliveries) == set(publisher.published)   # strict, nothing failed: all delivered
    assert result.duplicates <= in_flight
    assert_duplicates_are_one_object(result)
    # Each replayed delivery re-found its object (the same bytes, with or without sent_at).
    assert existed >= result.duplicates
    assert recovery is not None


# --- 2. the broker killed ----------------------------------------------------------------

# Longer than each wait of the job's Kafka clients: a committer's first read of the
# group's offsets (30 s), a commit's wait for its coordinator (about 45 s), a sink's
# flush (60 s); a crashed broker then takes a further ~10 s to come back.
BROKER_DOWN_S = 55


@pytest.mark.parametrize("code, away", [
    ("_TIMED_OUT", True),                 # committed(): no answer within its timeout
    ("_WAIT_COORD", True),                # commit(): no group coordinator yet
    ("NOT_COORDINATOR", True),            # the restarted broker is still loading the group
    ("COORDINATOR_LOAD_IN_PROGRESS", True),
    ("_TRANSPORT", True),
    ("_ALL_BROKERS_DOWN", True),
    ("_MSG_TIMED_OUT", True),
    ("UNKNOWN_TOPIC_OR_PART", False),     # a configuration error: waiting would not end it
    ("TOPIC_AUTHORIZATION_FAILED", False),
    ("MSG_SIZE_TOO_LARGE", False),
    ("INVALID_MSG", False),
])
def test_which_kafka_errors_the_job_waits_out(code, away):
    from confluent_kafka import KafkaError

    from pipeline.kafka import broker_away
    assert broker_away(KafkaError(getattr(KafkaError, code))) is away
    assert broker_away(None) is False


def test_the_job_rides_out_a_sigkilled_and_restarted_broker(s3_server):
    bucket = s3_server.create_bucket(f"brokercrash-{uuid.uuid4().hex[:8]}")
    messages = outbound(600, "brokercrash")
    with kafka.start() as own:  # its own broker: killing it disturbs no other test
        topic = own.create_topic(f"brokercrash-{uuid.uuid4().hex[:8]}", partitions=2)
        topics = output_topics(own, topic)
        job = Job(own, s3_server, bucket, topic, create_topics=False)
        publisher, outputs = Publisher(own, topic), Outputs(own, topics)
        try:
            job.start()
            publisher.start(messages, rate=60)
            wait_until(lambda: len(outputs["deliveries"]) >= 150, 120, "the first deliveries")
            port = own.port
            own.kill()
            killed_at = time.time()
            while time.time() < killed_at + BROKER_DOWN_S:   # the outage itself, the job watched
                assert job.process.poll() is None, \
                    f"the job exited {time.time() - killed_at:.0f} s into the broker's outage; see {job.log.name}"
                time.sleep(0.5)
            own.restart()                      # then as long as a crashed broker takes to come back
            back_at = time.time()
            assert own.port == port
            publisher.join()
            caught = settle(caught_up(publisher, outputs, len(messages)), 120)
            assert job.process.poll() is None, "the job exited instead of riding out the broker's crash"
            result = audit(publisher.published, outputs, bucket_objects(s3_server.boto3_client(), bucket))
        finally:
            publisher.close()
            job.close()
            outputs.close()
    recovery = first_append_after(outputs["deliveries"], back_at)
    record_row("streaming: Kafka broker SIGKILLed and restarted",
               f"kill -9 of the broker after 150 deliveries, down {back_at - killed_at:.0f} s, restarted on "
               "its port and data; the job left running", result.messages, len(result.lost),
               result.duplicates, len(result.failed), len(result.delivered_without_archive), recovery,
               backlog_drained_s=backlog_drained(publisher, outputs, back_at))
    assert not publisher.errors
    assert result.messages == len(messages)
    assert result.lost == [] and result.delivered_without_archive == [] and result.failed == {}
    assert caught
    assert set(result.deliveries) == set(publisher.published)
    assert_duplicates_are_one_object(result)
    assert recovery is not None


# --- 3. one tenant's credentials revoked -------------------------------------------------

ALLOW_ALL = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
DENY_S3 = {"Version": "2012-10-17", "Statement": [{"Effect": "Deny", "Action": "s3:*", "Resource": "*"}]}


class TenantUser:
    """A tenant's own IAM user and access key on moto (with auth on): `revoke()`
    attaches an explicit Deny of s3:* (moto then answers 403 AccessDenied to
    that key), `restore()` removes it."""

    def __init__(self, server, name: str):
        self._iam = server.boto3_client("iam")
        self.name = name
        self._iam.create_user(UserName=name)
        self._iam.put_user_policy(UserName=name, PolicyName="allow-all", PolicyDocument=json.dumps(ALLOW_ALL))
        key = self._iam.create_access_key(UserName=name)["AccessKey"]
        self.key, self.secret = key["AccessKeyId"], key["SecretAccessKey"]

    def revoke(self) -> None:
        self._iam.put_user_policy(UserName=self.name, PolicyName="revoked", PolicyDocument=json.dumps(DENY_S3))

    def restore(self) -> None:
        self._iam.delete_user_policy(UserName=self.name, PolicyName="revoked")


def tenant_file(path, server, buckets: dict[str, str], env_prefix: dict[str, str]) -> str:
    """A tenant file whose credentials come from the environment (${VAR}), never the file."""
    tenants = {name: {"profile": "clevertap", "destinations": [{
        "url": f"s3://{bucket}",
        "storage_options": {"key": f"${{{env_prefix[name]}_KEY}}", "secret": f"${{{env_prefix[name]}_SECRET}}",
                            "client_kwargs": {"endpoint_url": server.endpoint_url, "region_name": server.region}}}]}
               for name, bucket in buckets.items()}
    path.write_text(json.dumps({"tenants": tenants}))
    return str(path)


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100)."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, -(-len(ordered) * q // 100) - 1))]


def latencies_ms(publisher: Publisher, outputs: Outputs, tenant: str, since: float, until: float) -> list[int]:
    """Publish -> first delivery of `tenant`'s messages published in [since, until) (wall seconds)."""
    first = {}
    for record in outputs["deliveries"]:
        first[record.key] = min(first.get(record.key, record.append_ms), record.append_ms)
    return [first[m] - ms for m, (message, ms) in publisher.published.items()
            if message.tenant == tenant and since * 1000 <= ms < until * 1000 and m in first]


def wait_for_wall(moment: float) -> None:
    """Until the wall clock reads `moment` (bounded: the moments are seconds away)."""
    assert moment - time.time() < 60
    while time.time() < moment:
        time.sleep(min(0.05, max(0.0, moment - time.time())))


COOLDOWN_S = 2     # --breaker_cooldown: how soon after the restore the tenant's writes are tried again
REVOKED_S = 10
DRAIN_S = 2        # writes that began before the revocation may still be delivered this soon after it


def test_revoked_credentials_hold_one_tenant_back_while_the_other_flows(broker, s3_auth_server, tmp_path,
                                                                        monkeypatch):
    server = s3_auth_server
    run = uuid.uuid4().hex[:8]
    buckets = {"acme": server.create_bucket(f"acme-{run}"), "globex": server.create_bucket(f"globex-{run}")}
    users = {name: TenantUser(server, f"{name}-{run}") for name in buckets}
    prefixes = {"acme": "ACME_ARCHIVE", "globex": "GLOBEX_ARCHIVE"}
    for name, user in users.items():  # the job reads them through the tenant file's ${VAR}s
        monkeypatch.setenv(f"{prefixes[name]}_KEY", user.key)
        monkeypatch.setenv(f"{prefixes[name]}_SECRET", user.secret)
    tenants = tenant_file(tmp_path / "tenants.json", server, buckets, prefixes)
    topic = broker.create_topic(f"revoke-{run}", partitions=2)
    topics = output_topics(broker, topic)
    # No credentials on the command line: --destination is unused with --tenants.
    job = Job(broker, server, buckets["globex"], topic, None, "--tenants", tenants,
              "--destination", str(tmp_path / "unused"), "--storage_options", "{}",
              "--breaker_cooldown", str(COOLDOWN_S), create_topics=False)
    warm = outbound(16, "warm", tenants=("acme", "globex"))
    stream = outbound(880, "revoke", tenants=("acme", "globex"))
    publisher, outputs = Publisher(broker, topic), Outputs(broker, topics)
    try:
        job.start()
        publisher.start(warm, rate=100).join()
        wait_until(lambda: {r.key for r in outputs["deliveries"]} >= {m.message_id for m in warm}, 120,
                   "the job to deliver its first messages")
        started = time.time()
        publisher.start(stream, rate=40)          # 22 s of both tenants, taking turns
        wait_for_wall(started + 6)
        users["acme"].revoke()
        revoked_at = time.time()
        wait_for_wall(revoked_at + REVOKED_S)
        users["acme"].restore()
        restored_at = time.time()
        publisher.join()
        caught = settle(caught_up(publisher, outputs, len(warm) + len(stream)), 120)
        objects = {**bucket_objects(server.boto3_client(), buckets["acme"]),
                   **bucket_objects(server.boto3_client(), buckets["globex"])}
        result = audit(publisher.published, outputs, objects)
    finally:
        publisher.close()
        job.close()
        outputs.close()
    tenant_of = {m: message.tenant for m, (message, _) in publisher.published.items()}
    published_at = {m: ms / 1000 for m, (_, ms) in publisher.published.items()}
    acme_deliveries = [r for r in outputs["deliveries"] if tenant_of[r.key] == "acme"]
    delivered_in_fault = [r.key for r in acme_deliveries
                          if (revoked_at + DRAIN_S) * 1000 <= r.append_ms <= restored_at * 1000]
    recovery = first_append_after(acme_deliveries, restored_at)
    before = latencies_ms(publisher, outputs, "globex", started, revoked_at)
    during = latencies_ms(publisher, outputs, "globex", revoked_at, restored_at)
    figures = {f"globex_{p}_ms_{when}": percentile(values, q)
               for when, values in (("before", before), ("during", during)) for p, q in (("p50", 50), ("p99", 99))}
    record_row("streaming: one tenant's credentials revoked (strict, two tenants)",
               f"acme's IAM key denied s3:* for {restored_at - revoked_at:.0f} s (moto: 403 AccessDenied), "
               f"--breaker_cooldown {COOLDOWN_S}; globex untouched", result.messages, len(result.lost),
               result.duplicates, len(result.failed), len(result.delivered_without_archive), recovery,
               acme_delivered_during_fault=len(delivered_in_fault), **figures)

    assert not publisher.errors
    assert result.lost == [] and result.delivered_without_archive == []
    assert caught
    # The revoked tenant: what could not be archived is held back with its reason, never delivered.
    assert result.failed and {tenant_of[m] for m in result.failed} == {"acme"}
    assert {o["error_class"] for o in result.failed.values()} == {"auth"}
    assert all(revoked_at - DRAIN_S <= published_at[m] <= restored_at + COOLDOWN_S + 1 for m in result.failed)
    failures = {r.key: r for r in outputs["failures"]}
    assert set(failures) == set(result.failed)
    assert {r.headers["archive_status"] for r in failures.values()} == {"FAILED"}
    assert not set(result.failed) & set(result.deliveries)
    assert delivered_in_fault == []
    # ... and after the restore and the cooldown its messages are delivered again.
    assert recovery is not None
    assert all(m in result.deliveries for m, t in tenant_of.items()
               if t == "acme" and published_at[m] > restored_at + COOLDOWN_S + DRAIN_S)
    # The other tenant never stopped: every message delivered, during the fault too.
    assert all(m in result.deliveries for m, t in tenant_of.items() if t == "globex")
    assert len(during) > 150 and len(before) > 80
    assert figures["globex_p99_ms_during"] < 5000
    # Neither the keys nor the secrets show in any output or in the job's log.
    with open(job.log.name, "rb") as handle:
        job_log = handle.read()
    every_output = b"".join(r.value + json.dumps(r.headers).encode()
                            for name in OUTPUTS for r in outputs[name])
    for user in users.values():
        for secret in (user.key, user.secret):
            assert secret.encode() not in every_output and secret.encode() not in job_log


# --- 4. a store outage shorter than the hold ---------------------------------------------

OUTAGE_S = 20      # well inside the default --hold_seconds of 300


def test_a_store_outage_shorter_than_the_hold_fails_nothing_and_holds_the_stream(broker, s3_server):
    run = uuid.uuid4().hex[:8]
    bucket = s3_server.create_bucket(f"outage-{run}")
    topic = broker.create_topic(f"outage-{run}", partitions=1)
    topics = output_topics(broker, topic)
    max_in_flight = 16
    warm = outbound(8, "warm")
    stream = outbound(840, "outage")
    with FaultProxy(s3_server.endpoint_url) as proxy:
        job = Job(broker, s3_server, bucket, topic, proxy.url, "--max_in_flight", str(max_in_flight),
                  "--retry_max_delay", "0.5", create_topics=False)   # the default --hold_seconds: 300
        publisher, outputs = Publisher(broker, topic), Outputs(broker, topics)
        try:
            job.start()
            publisher.start(warm, rate=100).join()
            wait_until(lambda: len(outputs["deliveries"]) >= len(warm), 120, "the job to deliver its first messages")
            started = time.time()
            publisher.start(stream, rate=30)              # 28 s
            wait_for_wall(started + 4)
            outage = proxy.s3_error(503, "ServiceUnavailable", "injected outage", count=None, method="PUT")
            down_at = time.time()
            wait_for_wall(down_at + OUTAGE_S)
            proxy.clear_rules()
            up_at = time.time()
            refused = {r.path for r in proxy.requests if r.faulted}
            publisher.join()
            caught = settle(caught_up(publisher, outputs, len(warm) + len(stream)), 120)
            result = audit(publisher.published, outputs, bucket_objects(s3_server.boto3_client(), bucket))
        finally:
            publisher.close()
            job.close()
            outputs.close()
    published_at = {m: ms / 1000 for m, (_, ms) in publisher.published.items()}
    during = [m for m, at in published_at.items() if down_at <= at < up_at]
    recovery = first_append_after(outputs["deliveries"], up_at)
    record_row("streaming: store outage shorter than the hold",
               f"every PUT answered 503 for {up_at - down_at:.0f} s (FaultProxy), --hold_seconds 300",
               result.messages, len(result.lost), result.duplicates, len(result.failed),
               len(result.delivered_without_archive), recovery, refused_puts=outage.hits,
               keys_tried_during_outage=len(refused), published_during_outage=len(during),
               backlog_drained_s=backlog_drained(publisher, outputs, up_at))
    assert not publisher.errors
    assert result.failed == {} and result.lost == [] and result.delivered_without_archive == []
    assert caught
    assert set(result.deliveries) == set(publisher.published)     # all delivered once the store is back
    assert outage.hits > 0 and recovery is not None
    # Back-pressure: the held writes keep their slots and their bundle open, so the job
    # tries no more than max_in_flight messages during the outage while hundreds wait in Kafka.
    assert len(during) > 10 * max_in_flight
    assert len(refused) <= max_in_flight
