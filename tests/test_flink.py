"""The job on a real Flink session cluster (devservers.flink): a JobManager and two
TaskManagers on loopback, Beam's Flink job server, Python workers as PROCESS.

The backfill on Flink must leave exactly what the local runner leaves for the same
input: the same object keys with the same bytes, and the same outcomes.
"""

import json
import os
import signal
import time
import urllib.request
import uuid

import pytest

from archive import sample
from devservers.faultproxy import FaultProxy
from pipeline import run
from pipeline.flink import TERMINAL
from tests.test_pipeline import BAD_LINES, archive_files
from tests.test_streaming import (  # noqa: F401  (broker: the module's Kafka fixture)
    Reader, StreamingJob, assert_strict_outcomes, broker, committed_offsets, messages, publish)

pytestmark = pytest.mark.timeout(600)


def test_the_cluster_is_two_task_managers_with_the_web_ui_on_loopback(flink_cluster):
    overview = flink_cluster.rest("/overview")
    assert overview["flink-version"] == "1.19.0"
    assert (overview["taskmanagers"], overview["slots-total"]) == (2, 4)
    managers = flink_cluster.rest("/taskmanagers")["taskmanagers"]
    assert len({tm["id"] for tm in managers}) == 2
    assert flink_cluster.flink_master.startswith("127.0.0.1:")
    pids = {tm.pid for tm in flink_cluster.task_managers} | {flink_cluster.process.pid}
    assert len(pids) == 3  # three JVMs
    with urllib.request.urlopen(flink_cluster.rest_url + "/", timeout=10) as page:
        assert b"Apache Flink" in page.read()  # the web UI, served by the JobManager


def outcomes(folder):
    """Outcomes without what differs by run: the emit time, the write's latency and
    the archive folder's own path."""
    seen = []
    for name in sorted(os.listdir(folder)):
        with open(os.path.join(folder, name), encoding="utf-8") as handle:
            for line in handle:
                record = json.loads(line)
                record.pop("at", None)
                record.pop("latency_ms", None)
                record["url"] = (record.get("url") or "").rsplit("/archive/", 1)[-1]
                seen.append(json.dumps(record, sort_keys=True))
    return sorted(seen)


def dead_letters(root):
    lines = []
    folder = os.path.join(root, "dead_letters")
    for name in sorted(os.listdir(folder)):
        with open(os.path.join(folder, name), encoding="utf-8") as handle:
            for line in handle:
                record = json.loads(line)
                record.pop("at", None)
                lines.append(json.dumps(record, sort_keys=True))
    return sorted(lines)


@pytest.mark.parametrize("profile", ["clevertap", "braze"])
def test_the_backfill_on_flink_leaves_what_the_local_runner_leaves(flink_cluster, tmp_path, profile):
    source = tmp_path / f"messages-{profile}.jsonl.gz"
    assert sample.main(["--count", "600", "--profile", profile, "--out", str(source), "--bad-ratio", "0.05"]) in (0, None)
    runs = {}
    for name, runner in (("local", []), ("flink", flink_cluster.pipeline_args(parallelism=2))):
        base = tmp_path / name
        code = run.main(["--input", str(source), "--profile", profile, "--destination", str(base / "archive"),
                         "--outcomes", str(base / "outcomes"), "--default_region", "US", "--summary", "false",
                         "--run_id", f"{name}-{profile}", *runner])
        assert code == 0
        runs[name] = base
    local, on_flink = (archive_files(str(runs[n] / "archive")) for n in ("local", "flink"))
    assert len(local) > 500 and on_flink == local
    assert outcomes(runs["flink"] / "outcomes") == outcomes(runs["local"] / "outcomes")
    assert len(outcomes(runs["flink"] / "outcomes")) == 600
    assert dead_letters(runs["flink"] / "archive") == dead_letters(runs["local"] / "archive")
    assert len(dead_letters(runs["local"] / "archive")) > 0
    jobs = flink_cluster.rest("/jobs/overview")["jobs"]
    assert any(job["state"] == "FINISHED" for job in jobs)  # it ran on the cluster, not in-process


# --- the streaming job on the cluster -----------------------------------------------------

CHECKPOINT_MS = 2000


def flink_jobs(cluster, *states):
    return [job for job in cluster.rest("/jobs/overview")["jobs"] if not states or job["state"] in states]


def unfinished(cluster):
    """The cluster's jobs, of any name, not yet FINISHED, CANCELED or FAILED."""
    return [job for job in flink_jobs(cluster) if job["state"] not in TERMINAL]


def running_job(cluster, timeout=120):
    """The one job RUNNING with all its tasks running, once it is."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for job in flink_jobs(cluster, "RUNNING"):
            tasks = cluster.rest(f"/jobs/{job['jid']}")["status-counts"]
            if tasks.get("RUNNING", 0) and set(k for k, v in tasks.items() if v) == {"RUNNING"}:
                return job["jid"]
        time.sleep(0.5)
    raise AssertionError(f"no job running on the cluster: {flink_jobs(cluster)}")


def checkpoints(cluster, jid):
    return cluster.rest(f"/jobs/{jid}/checkpoints")


def completed_checkpoints(cluster, jid, at_least=1, timeout=60):
    """The job's checkpoint statistics once `at_least` have completed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        stats = checkpoints(cluster, jid)
        if stats["counts"]["completed"] >= at_least:
            return stats
        time.sleep(0.5)
    failed = [c.get("failure_message") for c in stats["history"] if c["status"] == "FAILED"]
    raise AssertionError(f"{stats['counts']} checkpoints after {timeout}s; failures: {failed[:3]}")


def produced(broker, topics):
    """What the job has written to each output topic (for a failure's message): the
    reader's view and the broker's can then be told apart."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": broker.bootstrap_servers, "group.id": "peek"})
    try:
        return {name: consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)[1]
                for name, topic in topics.items()}
    finally:
        consumer.close()


class Stalled(AssertionError):
    """The job wrote nothing at all to any output topic in the time given."""


def vertex_records(cluster):
    """Records in and out of each running job's vertices: where a stall stands."""
    try:
        return [{v["name"][:60]: (v.get("metrics", {}).get("read-records"), v.get("metrics", {}).get("write-records"))
                 for v in cluster.rest(f"/jobs/{job['jid']}").get("vertices", [])}
                for job in flink_jobs(cluster, "RUNNING")]
    except (OSError, ValueError) as error:  # a report must not hide the stall it reports
        return repr(error)


def until_outputs(reader, broker, topics, done, timeout, what, cluster):
    """reader.until(done), failing with what the broker and the job's vertices hold;
    Stalled when the broker holds nothing."""
    if reader.until(done, timeout):
        return
    held = produced(broker, topics)
    error = Stalled if not any(held.values()) else AssertionError
    raise error(f"{what}: read {len(reader.seen['outcomes'])} outcomes; the broker holds {held}; "
                f"records in/out by vertex: {vertex_records(cluster)}")


class FlinkStream(StreamingJob):
    """The streaming job as a user starts it, on the cluster, checkpointing every 2 s."""

    def __init__(self, cluster, broker, s3_server, bucket, topic, endpoint_url=None, *extra, **kwargs):
        super().__init__(broker, s3_server, bucket, topic, endpoint_url, *cluster.pipeline_args(parallelism=2),
                         f"--checkpointing_interval={CHECKPOINT_MS}", *extra, **kwargs)
        self.cluster = cluster

    def stop(self, sig=signal.SIGTERM):
        """SIGTERM: the launcher cancels its Flink job, which must leave the cluster's slots free."""
        super().stop(sig)
        deadline = time.monotonic() + 60
        while (left := unfinished(self.cluster)) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not left, f"stopping the launcher left jobs on the cluster: {left}"


def new_stream(prefix, cluster, broker, s3_server, endpoint_url=None, *extra):
    """A fresh input topic (4 partitions) and bucket, the job on them (not started),
    and a reader of its outputs."""
    topic = f"{prefix}-{uuid.uuid4().hex[:8]}"
    broker.create_topic(topic, partitions=4)
    bucket = s3_server.create_bucket(topic)
    job = FlinkStream(cluster, broker, s3_server, bucket, topic, endpoint_url, *extra)
    return topic, bucket, job, Reader(broker, job.topics)


def test_the_strict_stream_on_flink_archives_each_message_once_and_delivers_only_the_archived(
        flink_cluster, broker, s3_server):
    values = messages(200, "strict") + BAD_LINES[:3]
    with FaultProxy(s3_server.endpoint_url) as proxy:
        # every SMS object is refused for good: those messages must not be delivered
        proxy.s3_error(400, "InvalidRequest", "refused by the test", None, method="PUT", path=r"/Sms/")
        topic, bucket, job, reader = new_stream("flink", flink_cluster, broker, s3_server, proxy.url)
        publish(broker, topic, values)
        job.start()
        try:
            until_outputs(reader, broker, job.topics, lambda seen: len(seen["outcomes"]) >= len(values), 240,
                          f"{len(values)} outcomes", flink_cluster)
            assert reader.until(
                lambda seen: len(seen["deliveries"]) + len(seen["failures"]) >= len(values), 60)
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                committed, ends = committed_offsets(broker, f"{topic}-group", topic)
                if committed == ends:
                    break
                time.sleep(0.5)
            assert committed == ends  # every record decided and durable: committed to the end
            jid = running_job(flink_cluster)
            completed_checkpoints(flink_cluster, jid)  # it checkpoints while it streams
        finally:
            job.stop()
    assert [job["state"] for job in flink_jobs(flink_cluster) if job["jid"] == jid] == ["CANCELED"]
    assert_strict_outcomes(reader, s3_server, bucket, len(values), invalid=3)


def delivered_ids(seen):
    return {json.loads(m.value())["message_id"] for m in seen["deliveries"]}


def outcome_ids(seen):
    return {json.loads(m.value())["message_id"] for m in seen["outcomes"]}


def test_a_task_manager_killed_mid_stream_loses_nothing_and_delivers_nothing_unarchived(
        flink_cluster, broker, s3_server):
    topic, bucket, job, reader = new_stream("flink-kill", flink_cluster, broker, s3_server)
    first, second = messages(200, "before"), messages(200, "after")
    wanted = {json.loads(v)["message_id"] for v in first + second}
    publish(broker, topic, first)
    job.start()
    try:
        until_outputs(reader, broker, job.topics, lambda seen: len(seen["outcomes"]) >= 20, 240, "20 outcomes",
                      flink_cluster)
        jid = running_job(flink_cluster)
        completed_checkpoints(flink_cluster, jid)  # one to restore from
        killed = time.monotonic()
        flink_cluster.kill_task_manager(1)      # SIGKILL: the JVM and its Python workers, mid-stream
        publish(broker, topic, second)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and flink_cluster.rest(f"/jobs/{jid}/exceptions").get(
                "exceptionHistory", {}).get("entries", []) == []:
            time.sleep(0.5)
        running_job(flink_cluster, timeout=120)  # restored from its checkpoint on the TaskManager left
        restored = time.monotonic()
        assert reader.until(lambda seen: wanted <= delivered_ids(seen) and wanted <= outcome_ids(seen), 240), \
            f"{len(wanted - delivered_ids(reader.seen))} of {len(wanted)} never delivered"
        caught_up = time.monotonic()
        restarts = flink_cluster.rest(f"/jobs/{jid}/exceptions")["exceptionHistory"]["entries"]
        assert restarts, "the job never noticed the TaskManager it lost"
    finally:
        job.stop()
        flink_cluster.add_task_manager()  # the cluster as it was, for the tests after this one
    outcomes = reader.outcomes()
    reader.close()
    assert {o["message_id"] for o in outcomes} == wanted    # at least one outcome each: nothing lost
    archived = {o["message_id"]: o for o in outcomes if o["status"] == "ARCHIVED"}
    assert set(archived) == wanted
    client = s3_server.boto3_client()
    for message in reader.seen["deliveries"]:               # a replay may deliver twice, same id
        message_id = message.key().decode()
        assert dict(message.headers())["archive_status"] == b"ARCHIVED"
        key = archived[message_id]["url"].split(bucket + "/", 1)[1]
        assert client.head_object(Bucket=bucket, Key=key)["ContentLength"] == archived[message_id]["bytes"]
    from tests.reliability import record_row
    record_row("flink-taskmanager-killed", "SIGKILL of one of two TaskManagers mid-stream (Flink restores "
               "the job from its last checkpoint on the other)", len(wanted), 0,
               len(reader.seen["deliveries"]) - len(wanted), 0, 0, caught_up - killed,
               restored_s=round(restored - killed, 1))


def test_checkpoints_stay_the_same_size_idle_and_under_load(flink_cluster, broker, s3_server):
    """The Kafka reader checkpoints itself after every poll; each self-checkpoint's
    residual must leave the job's state when it is resumed (devservers.flink_sdf_patch),
    or every Flink checkpoint is larger than the last. The audit index is off here: its
    rows wait in the job's state for their file (up to a minute), which is state that
    grows with the load on purpose; this measures the reader's."""
    topic, bucket, job, reader = new_stream("flink-size", flink_cluster, broker, s3_server, None,
                                            "--audit_index", "false")
    job.start()
    try:
        jid = running_job(flink_cluster)
        start = completed_checkpoints(flink_cluster, jid, at_least=3)["latest"]["completed"]
        time.sleep(20)                                        # idle: about 100 polls per partition
        idle = checkpoints(flink_cluster, jid)["latest"]["completed"]
        values = messages(600, "load")
        for index in range(0, len(values), 30):              # load: 30 every 0.2 s, 150/s for 4 s
            publish(broker, topic, values[index:index + 30])
            time.sleep(0.2)
        until_outputs(reader, broker, job.topics, lambda seen: len(seen["outcomes"]) >= len(values), 120,
                      f"{len(values)} outcomes", flink_cluster)
        loaded = completed_checkpoints(flink_cluster, jid, at_least=idle["id"] + 2)["latest"]["completed"]
        time.sleep(10)
        after = checkpoints(flink_cluster, jid)["latest"]["completed"]
    finally:
        job.stop()
        reader.close()
    sizes = [c["state_size"] for c in (start, idle, loaded, after)]
    assert after["id"] - start["id"] >= 10, sizes
    # Unpatched, each 2-s checkpoint here grew by about 27 KB, idle or not.
    assert max(sizes) - min(sizes) < 4096, sizes
