"""The job on a real Flink session cluster (devservers.flink): a JobManager and two
TaskManagers on loopback, Beam's Flink job server, Python workers as PROCESS.

The backfill on Flink must leave exactly what the local runner leaves for the same
input: the same object keys with the same bytes, and the same outcomes.
"""

import json
import os
import urllib.request

import pytest

from archive import sample
from pipeline import run
from tests.test_pipeline import archive_files

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
