"""The streaming job end to end: a real Kafka broker in, moto (S3) as the store, Prism as the runner.

The job runs as `python -m pipeline.run --kafka_topic ...` in its own process
group, exactly as a user starts it, and is stopped with SIGTERM or killed.
"""

import base64
import contextlib
import hashlib
import io
import json
import os
import signal
import subprocess
import sys
import time
import uuid

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

from devservers import kafka
from devservers.faultproxy import FaultProxy
from tests.test_pipeline import BAD_LINES, clevertap_records

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def broker():
    with kafka.start() as server:
        yield server


def messages(count, prefix):
    """`count` distinct, valid messages over every clevertap channel."""
    records = clevertap_records()
    return [json.dumps({**records[i % len(records)], "message_id": f"{prefix}-{i}"}).encode()
            for i in range(count)]


def publish(broker, topic, values):
    producer = Producer({"bootstrap.servers": broker.bootstrap_servers, "linger.ms": 5})
    for value in values:
        producer.produce(topic, value)
    assert producer.flush(30) == 0


def indexed_keys(s3_server, bucket) -> set:
    """The keys the destination's audit index names (retrieval reads it as a user would)."""
    from retrieval.bucket import Bucket
    from retrieval.index import AuditIndex
    return set(AuditIndex(Bucket(f"s3://{bucket}", s3_server.storage_options())).find().column("key").to_pylist())


def until_true(condition, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.5)
    return condition()


class StreamingJob:
    def __init__(self, broker, s3_server, bucket, topic, endpoint_url=None, *extra, create_topics=True):
        self.topics = {name: f"{topic}-{name}" for name in ("deliveries", "failures", "outcomes")}
        for name in self.topics.values() if create_topics else ():
            broker.create_topic(name, partitions=1)
        self.argv = [sys.executable, "-m", "pipeline.run", "--kafka_topic", topic,
                     "--kafka_bootstrap_servers", broker.bootstrap_servers, "--kafka_group", f"{topic}-group",
                     "--destination", f"s3://{bucket}",
                     "--storage_options", json.dumps(s3_server.storage_options(endpoint_url)),
                     "--deliveries", f"kafka://{self.topics['deliveries']}",
                     "--failures", f"kafka://{self.topics['failures']}",
                     "--outcomes", f"kafka://{self.topics['outcomes']}",
                     "--retry_base_delay", "0.01", "--retry_max_delay", "0.05", *extra]
        self.process = None
        self.log = open(os.path.join(ROOT, ".cache", f"streaming-{topic}.log"), "ab")

    def start(self):
        self.process = subprocess.Popen(self.argv, cwd=ROOT, stdout=self.log, stderr=subprocess.STDOUT,
                                        start_new_session=True)

    def stop(self, sig=signal.SIGTERM):
        """SIGTERM: a clean stop. SIGKILL to the whole group: a crash, runner included."""
        process, self.process = self.process, None
        if process is None:
            return
        if sig == signal.SIGKILL:
            _kill_group(process.pid)
        else:
            process.send_signal(sig)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            _kill_group(process.pid)
            process.wait(10)
        _kill_group(process.pid)  # whatever of the group is left (the runner)


def _kill_group(pid):
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


class Reader:
    """Reads the job's three output topics from the start, as delivery would."""

    def __init__(self, broker, topics):
        # Assigned, not subscribed: a subscription waits for a group join, and leaves out a
        # topic created a moment ago until the next metadata refresh (5 min by default).
        # Each output topic has one partition, read from its beginning.
        self.consumer = Consumer({"bootstrap.servers": broker.bootstrap_servers,
                                  "group.id": f"reader-{uuid.uuid4().hex}", "enable.auto.commit": False,
                                  "topic.metadata.refresh.interval.ms": 1000})
        self.consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING) for topic in topics.values()])
        self.names = {v: k for k, v in topics.items()}
        self.seen = {name: [] for name in topics}

    def until(self, done, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not done(self.seen):
            for message in self.consumer.consume(100, 0.5):
                if message.error() is None:
                    self.seen[self.names[message.topic()]].append(message)
        return done(self.seen)

    def outcomes(self):
        return [json.loads(m.value()) for m in self.seen["outcomes"]]

    def close(self):
        self.consumer.close()


def outcome_key(outcome):
    return outcome.get("message_id") if outcome["status"] != "INVALID" else outcome["input_sha256"]


def committed_offsets(broker, group, topic):
    consumer = Consumer({"bootstrap.servers": broker.bootstrap_servers, "group.id": group})
    try:
        metadata = consumer.list_topics(topic, timeout=10).topics[topic]
        parts = [TopicPartition(topic, p) for p in metadata.partitions]
        committed = {tp.partition: tp.offset for tp in consumer.committed(parts, timeout=10)}
        ends = {tp.partition: consumer.get_watermark_offsets(tp, timeout=10)[1] for tp in parts}
        return committed, ends
    finally:
        consumer.close()

def assert_strict_outcomes(reader, s3_server, bucket, count, invalid):
    """After a strict stream with SMS refused: one outcome for each of `count` records,
    SMS FAILED and the rest ARCHIVED (or INVALID), delivered exactly the ARCHIVED, each
    delivery's object stored with its outcome's sha256, and the rest held with their status."""
    outcomes = reader.outcomes()
    reader.close()
    keys = [outcome_key(o) for o in outcomes]
    assert len(keys) == len(set(keys)) == count             # exactly one outcome each
    by_id = {o["message_id"]: o for o in outcomes if o["status"] != "INVALID"}
    archived = {k for k, o in by_id.items() if o["status"] == "ARCHIVED"}
    failed = {k for k, o in by_id.items() if o["status"] == "FAILED"}
    assert failed and all(by_id[k]["channel"] == "sms" for k in failed)
    assert archived and all(by_id[k]["channel"] != "sms" for k in archived)
    delivered = {m.key().decode(): m for m in reader.seen["deliveries"]}
    assert len(delivered) == len(reader.seen["deliveries"])  # none twice
    assert set(delivered) == archived
    client = s3_server.boto3_client()
    for message_id, message in delivered.items():
        assert dict(message.headers())["archive_status"] == b"ARCHIVED"
        key = by_id[message_id]["url"].split(bucket + "/", 1)[1]
        body = client.get_object(Bucket=bucket, Key=key)["Body"].read()
        assert hashlib.sha256(body).hexdigest() == by_id[message_id]["sha256"]
        assert json.loads(message.value())["message_id"] == message_id  # the message as sent to us
    held = [dict(m.headers())["archive_status"] for m in reader.seen["failures"]]
    assert sorted(held) == sorted([b"FAILED"] * len(failed) + [b"INVALID"] * invalid)


@pytest.mark.parametrize("local_runner", ["prism", "flink"])
def test_strict_streaming_archives_every_message_and_delivers_only_the_archived(broker, s3_server, local_runner):
    topic = f"outbound-{uuid.uuid4().hex[:8]}"
    broker.create_topic(topic, partitions=4)
    bucket = s3_server.create_bucket(f"stream-{uuid.uuid4().hex[:8]}")
    values = messages(120, "strict") + BAD_LINES[:3]
    with FaultProxy(s3_server.endpoint_url) as proxy:
        # every SMS object is refused for good: those messages must not be delivered
        proxy.s3_error(400, "InvalidRequest", "refused by the test", None, method="PUT", path=r"/Sms/")
        job = StreamingJob(broker, s3_server, bucket, topic, proxy.url, "--local_runner", local_runner,
                           "--audit_index_flush_seconds", "1")
        reader = Reader(broker, job.topics)
        publish(broker, topic, values)
        job.start()
        try:
            assert reader.until(lambda seen: len(seen["outcomes"]) >= len(values), 180), \
                f"{len(reader.seen['outcomes'])} of {len(values)} outcomes"
            # the audit index names exactly the archived objects, each once, within its flush time
            archived_keys = {json.loads(m.value())["url"].split(bucket + "/", 1)[1]
                             for m in reader.seen["outcomes"] if json.loads(m.value())["status"] == "ARCHIVED"}
            assert archived_keys
            assert until_true(lambda: indexed_keys(s3_server, bucket) == archived_keys, 60), \
                (len(indexed_keys(s3_server, bucket)), len(archived_keys))
            # all decided: both outputs complete, and the offsets committed past everything
            assert reader.until(
                lambda seen: len(seen["deliveries"]) + len(seen["failures"]) >= len(values), 60)
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                committed, ends = committed_offsets(broker, f"{topic}-group", topic)
                if committed == ends:
                    break
                time.sleep(0.5)
            # Commits never pass an unfinished record, and they advance. (Under heavy load
            # Prism 2.77's SDK harness now and then fails a finished bundle on release, a
            # KeyError in bundle_processor_cache; a committer bundle lost that way leaves its
            # partition behind, so a restart replays more: duplicates, never a loss.)
            assert all(0 <= committed[p] <= ends[p] for p in ends)
            assert sum(committed.values()) > 0
            if local_runner == "flink":  # its committer runs on checkpoints (every 10 s), none lost
                assert committed == ends
        finally:
            job.stop()
    # the workers' options file (credentials in it) stays out of the launcher's folder
    assert not os.path.exists(os.path.join(ROOT, "pipeline_options.json"))
    assert_strict_outcomes(reader, s3_server, bucket, len(values), invalid=3)
    # every delivery on the topic has its object, intact and indexed (message-archiver reconcile)
    from cli import main as message_archiver
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        status = message_archiver(["reconcile", "--destination", f"s3://{bucket}", "--storage_options",
                                   json.dumps(s3_server.storage_options()), "--deliveries",
                                   f"kafka://{job.topics['deliveries']}", "--kafka_bootstrap_servers",
                                   broker.bootstrap_servers, "--json"])
    report = json.loads(out.getvalue())
    assert status == 0 and report["delivered"] == report["ok"] == len(reader.seen["deliveries"]) > 0


def test_a_crash_mid_stream_loses_nothing_and_delivers_nothing_unarchived(broker, s3_server):
    topic = f"restart-{uuid.uuid4().hex[:8]}"
    broker.create_topic(topic, partitions=2)
    bucket = s3_server.create_bucket(f"restart-{uuid.uuid4().hex[:8]}")
    first, second = messages(150, "before"), messages(150, "after")
    job = StreamingJob(broker, s3_server, bucket, topic)
    restarted = StreamingJob(broker, s3_server, bucket, topic, create_topics=False)
    reader = Reader(broker, job.topics)
    publish(broker, topic, first)
    job.start()
    try:
        assert reader.until(lambda seen: len(seen["outcomes"]) >= 20, 180)
        publish(broker, topic, second)
        job.stop(signal.SIGKILL)                    # crash: runner and all, mid-stream
        restarted.start()
        wanted = {json.loads(v)["message_id"] for v in first + second}
        delivered_ids = lambda seen: {json.loads(m.value())["message_id"] for m in seen["deliveries"]}
        outcome_ids = lambda seen: {json.loads(m.value())["message_id"] for m in seen["outcomes"]}
        assert reader.until(lambda seen: wanted <= delivered_ids(seen) and wanted <= outcome_ids(seen), 240), \
            (f"{len(wanted - delivered_ids(reader.seen))} of {len(wanted)} never delivered, e.g. "
             f"{sorted(wanted - delivered_ids(reader.seen))[:5]}; outcomes {len(reader.seen['outcomes'])}")
    finally:
        job.stop(signal.SIGKILL)
        restarted.stop()
    outcomes = reader.outcomes()
    reader.close()
    assert {o["message_id"] for o in outcomes} == wanted   # at least one outcome each
    archived = {o["message_id"]: o for o in outcomes if o["status"] == "ARCHIVED"}
    client = s3_server.boto3_client()
    for message in reader.seen["deliveries"]:           # replays may deliver twice, same id
        message_id = message.key().decode()
        assert dict(message.headers())["archive_status"] == b"ARCHIVED"
        key = archived[message_id]["url"].split(bucket + "/", 1)[1]
        assert client.head_object(Bucket=bucket, Key=key)["ContentLength"] == archived[message_id]["bytes"]


# --- hostile records through the delivery sinks ------------------------------------------

def _reject_constant(name):
    raise ValueError(f"{name} is not JSON")


def strict_json_lines(data: bytes):
    """Each line parsed as RFC 8259 JSON from valid UTF-8: no NaN, no lone surrogate."""
    text = data.decode("utf-8")  # strict: invalid UTF-8 raises
    records = [json.loads(line, parse_constant=_reject_constant) for line in text.splitlines()]
    for record in records:
        json.dumps(record, allow_nan=False).encode("utf-8")  # a lone surrogate escape would raise here
        text_of = json.dumps(record, ensure_ascii=False)
        text_of.encode("utf-8")
    return records


HOSTILE_MESSAGES = [
    pytest.param(json.dumps(clevertap_records()[2]).encode(), True, id="valid"),
    pytest.param(b'{"channel":"sms","to":"\\ud800","body":"x"}', False, id="escaped-lone-high-surrogate"),
    pytest.param(b'{"channel":"sms","body":"\\udfff tail"}', False, id="escaped-lone-low-surrogate"),
    pytest.param(b'{"k":"\xed\xa0\x80"}', False, id="utf8-encoded-surrogate-bytes"),
    pytest.param(b'\xff\xfe{"channel":"sms"}', False, id="invalid-utf8"),
    pytest.param(b'{"a":"\x00"}', False, id="raw-nul-in-string"),
    pytest.param(b"\x00" * 16, False, id="only-nuls"),
    pytest.param(b'{"a":"\\u0000"}', True, id="escaped-nul"),
    pytest.param(b'{"n": NaN}', False, id="nan"),
    pytest.param(b'{"n": -Infinity}', False, id="infinity"),
    pytest.param(b'{"n": 1e400}', False, id="float-overflow"),
    pytest.param(b'{"f": 0.100000000000000000000001}', False, id="float-beyond-double"),
    pytest.param(b'{"a": 1, "a": 2}', False, id="duplicate-keys"),
    pytest.param(b"[1, 2, 3]", True, id="array"),
    pytest.param(b"", False, id="empty"),
    pytest.param(b"{not json", False, id="not-json"),
    pytest.param(b'{"body": "' + b"x" * 3_000_000 + b'"}', True, id="huge"),
    pytest.param(b'{"body": "\\ud83d\\ude00 paired"}', True, id="escaped-surrogate-pair"),
]


@pytest.mark.parametrize("message_id", [None, "m-1", "m-\ud800", "m-\x00"], ids=["no-id", "id", "surrogate-id", "nul-id"])
@pytest.mark.parametrize("data, embedded", HOSTILE_MESSAGES)
def test_a_folder_sink_writes_every_delivery_record_as_strict_json_keeping_the_message(
        tmp_path, data, embedded, message_id):
    from archive.gate import decide
    from archive.outcome import INVALID, Outcome
    from pipeline.sinks import FolderSink
    from pipeline.streaming import delivery_record
    from transforms.gate import Deliverable, Released

    outcome = Outcome(INVALID, message_id, "t", "sms", "clevertap", reason="bad \ud800 input")
    released = Released(Deliverable("k", message_id, "t", "sms", data, attributes={"a": "b"}), outcome,
                        decide("strict", outcome))
    sink = FolderSink(str(tmp_path / "failures"), "failures", run_id="r1")
    sink.add_record(delivery_record(released))
    sink.flush()
    [name] = os.listdir(tmp_path / "failures")
    assert name.startswith("failures-r1-") and name.endswith(".jsonl")
    [record] = strict_json_lines((tmp_path / "failures" / name).read_bytes())
    if embedded:
        assert "message_base64" not in record
        assert record["message"] == json.loads(data)
    else:
        assert "message" not in record
        assert base64.b64decode(record["message_base64"]) == data  # the exact bytes
    assert record["archive_status"] == INVALID


@pytest.mark.parametrize("message_id, reason", [
    pytest.param("m-1", "archived", id="plain"),
    pytest.param("m-\ud800", "failed \udfff", id="surrogates"),
    pytest.param("m-é", "x" + "é" * 600, id="long-multibyte-reason"),
    pytest.param(None, "x" * 5000, id="no-id-long-reason"),
])
def test_kafka_headers_and_pubsub_attributes_are_total(message_id, reason):
    from archive.gate import Decision
    from pipeline.streaming import _delivery_message, _pubsub_attributes
    from transforms.gate import Deliverable, Released

    released = Released(Deliverable("tenant/key", message_id, "t", "sms", b"\xff"), None,
                        Decision("HOLD", reason, True))
    key, value, headers = _delivery_message(released)
    assert isinstance(key, bytes) and value == b"\xff"
    for name, header in headers:
        header.decode("utf-8")  # valid UTF-8, whatever the id or reason held
        assert len(header) <= 1024
    attributes = _pubsub_attributes(released)
    for name, text in attributes.items():
        assert len(text.encode("utf-8")) <= 1024 and len(name.encode("utf-8")) <= 256


POISON = [
    b'{"channel":"sms","to":"\\ud800","body":"x","campaign_id":1,"campaign_name":"c"}',
    b'{"channel":"sms","body":"\\udfff","message_id":"poison-2"}',
    b'\xff\xfe\x00not utf-8',
    b'{"n": NaN, "channel": "sms"}',
    b'{"a": 1, "a": 2}',
    b"\x00",
]


def test_poison_records_get_one_verdict_each_and_the_stream_keeps_going(broker, s3_server, tmp_path):
    topic = f"poison-{uuid.uuid4().hex[:8]}"
    broker.create_topic(topic, partitions=2)
    bucket = s3_server.create_bucket(f"poison-{uuid.uuid4().hex[:8]}")
    before, after = messages(40, "before"), messages(40, "after")
    failures, deliveries = tmp_path / "failures", tmp_path / "deliveries"
    job = StreamingJob(broker, s3_server, bucket, topic, None,
                       "--failures", str(failures), "--deliveries", str(deliveries), "--run_id", "poison-run")
    reader = Reader(broker, job.topics)
    publish(broker, topic, before + POISON)
    job.start()
    try:
        total = len(before) + len(POISON) + len(after)
        assert reader.until(lambda seen: len(seen["outcomes"]) >= len(before) + len(POISON), 180)
        publish(broker, topic, after)  # the job is still reading after the poison
        assert reader.until(lambda seen: len(seen["outcomes"]) >= total, 120), len(reader.seen["outcomes"])

        def folder_records(folder):
            if not folder.exists():
                return []
            return [r for n in sorted(os.listdir(folder)) if not n.startswith(".")
                    for r in strict_json_lines((folder / n).read_bytes())]
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and \
                len(folder_records(failures)) + len(folder_records(deliveries)) < total:
            time.sleep(0.5)
    finally:
        job.stop()
    outcomes = reader.outcomes()
    reader.close()
    keys = [outcome_key(o) for o in outcomes]
    assert len(keys) == len(set(keys)) == total            # one verdict each, none replayed in a loop
    held, delivered = folder_records(failures), folder_records(deliveries)
    assert len(held) == len(POISON) and len(delivered) == len(before) + len(after)
    kept = sorted(base64.b64decode(r["message_base64"]) if "message_base64" in r else None for r in held)
    assert kept == sorted(POISON)                         # each poison record, byte for byte
    assert all(n.startswith(("failures-poison-run-", ".")) for n in os.listdir(failures))
