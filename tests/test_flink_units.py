"""The launcher's side of Flink without a cluster: the master's transport rule, the
job's name, the Flink runner flags the job accepts, and the job server backport."""

import subprocess
import sys
import zipfile

import pytest

from devservers import flink as flink_cluster
from devservers import flink_sdf_patch
from devservers._process import DevServerError
from pipeline import flink
from pipeline.options import unknown_flags
from tests.test_transport import loopback_only  # noqa: F401  (fixture)


@pytest.mark.parametrize("master, url", [
    ("127.0.0.1:8081", "http://127.0.0.1:8081"),
    ("http://localhost:8081/", "http://localhost:8081"),
    ("https://jobmanager.internal:8081", "https://jobmanager.internal:8081"),
    ("[local]", None), ("[auto]", None), ("", None),
])
def test_rest_url_of_the_master(master, url):
    assert flink.rest_url(master) == url


@pytest.mark.parametrize("master, allowed, refused", [
    ("127.0.0.1:8081", False, False),
    ("[::1]:8081", False, False),
    ("[local]", False, False),
    ("https://jobmanager.internal:8081", False, False),
    ("jobmanager.internal:8081", False, True),          # a bare host:port is plain HTTP
    ("http://10.0.0.5:8081", False, True),
    ("http://user:secret@10.0.0.5:8081", False, True),
    ("http://10.0.0.5:8081", True, False),              # --allow_insecure_http true
])
def test_plain_http_to_a_master_off_loopback_is_refused_before_any_connection(
        loopback_only, master, allowed, refused):
    if refused:
        with pytest.raises(ValueError) as caught:
            flink.check_master(master, allowed)
        assert "--flink_master" in str(caught.value) and "secret" not in str(caught.value)
    else:
        flink.check_master(master, allowed)


def test_the_job_refuses_a_plain_http_master_off_loopback_as_a_usage_error(loopback_only, tmp_path):
    from pipeline import run

    code = run.main(["--input", str(tmp_path / "none.jsonl"), "--destination", str(tmp_path / "a"),
                     "--runner", "FlinkRunner", "--flink_master", "http://10.1.2.3:8081"])
    assert code == run.EXIT_USAGE


def test_a_stream_on_flink_is_named_after_its_run_so_a_stop_finds_its_job():
    from apache_beam.options.pipeline_options import GoogleCloudOptions
    from pipeline.run import streaming_pipeline

    pipeline, archive = streaming_pipeline([
        "--kafka_topic", "t", "--destination", "memory://x", "--run_id", "20261202T101010Z-ab12cd",
        "--runner", "FlinkRunner", "--flink_master", "127.0.0.1:1"])
    assert archive.view_as(GoogleCloudOptions).job_name == "message-archiver-20261202t101010z-ab12cd"
    assert flink.job_name("R-1") == "message-archiver-r-1"


@pytest.mark.parametrize("argv, finishes", [
    (["--runner", "FlinkRunner"], True),
    (["--runner=FlinkRunner", "--checkpointing_interval=2000"], True),
    (["--runner", "apache_beam.runners.portability.flink_runner.FlinkRunner"], True),
    (["--runner", "FlinkRunner", "--finish_bundle_before_checkpointing", "false"], False),  # the user's word
    (["--runner=FlinkRunner", "--finish_bundle_before_checkpointing=false"], False),
    (["--runner", "PrismRunner"], False), (["--runner", "DataflowRunner"], False),
])
def test_a_stream_on_flink_finishes_its_bundles_before_each_checkpoint_barrier(argv, finishes):
    # else a bundle open at the first barrier holds the reader's partitions for good
    from apache_beam.options.pipeline_options import PipelineOptions
    from pipeline.run import streaming_options

    options = PipelineOptions(argv + streaming_options(argv)).get_all_options()
    assert bool(options["finish_bundle_before_checkpointing"]) is finishes


def test_the_local_flink_runner_is_the_mini_cluster_with_a_worker_per_core_and_short_bundles(monkeypatch):
    import json
    import os

    from apache_beam.options.pipeline_options import PipelineOptions
    from devservers import flink as installed
    from pipeline.run import streaming_options

    monkeypatch.setattr(os, "cpu_count", lambda: 3)
    monkeypatch.setenv("PATH", "/usr/bin")
    monkeypatch.delenv("RUN_PYTHON_SDK_IN_DEFAULT_ENVIRONMENT", raising=False)
    for path in (installed.JOB_SERVER_JAR, installed.BOOT):
        monkeypatch.setattr(type(path), "exists", lambda self: True)
    argv = ["--kafka_topic", "t", "--local_runner", "flink", "--max_bundle_time_mills=50"]
    options = PipelineOptions(argv + streaming_options(argv)).get_all_options()
    assert (options["runner"], options["flink_master"], options["environment_type"]) == \
        ("FlinkRunner", "[local]", "PROCESS")
    assert options["flink_job_server_jar"] == str(installed.JOB_SERVER_JAR)
    assert (str(options["parallelism"]), str(options["sdk_worker_parallelism"])) == ("3", "3")
    assert options["max_bundle_time_mills"] == 50      # the user's word over the default 20
    assert (options["checkpointing_interval"], options["finish_bundle_before_checkpointing"]) == (10000, True)
    boot = json.loads(options["environment_config"])["command"]
    assert str(installed.BOOT) in open(boot).read()    # the real boot, run from a private folder
    assert os.stat(os.path.dirname(boot)).st_mode & 0o077 == 0
    assert os.environ["RUN_PYTHON_SDK_IN_DEFAULT_ENVIRONMENT"] == "1"
    assert os.environ["PATH"].split(os.pathsep)[0] == os.path.join(os.path.dirname(boot), "bin")


FAKE_BOOT = r"""#!/bin/sh
echo '{"beam:option:storage_options:v1": "secret"}' > pipeline_options.json
export PIPELINE_OPTIONS_FILE=pipeline_options.json
exec python -c 'import os; print(os.getcwd()); print(open(os.environ["PIPELINE_OPTIONS_FILE"]).read())'
"""


def test_a_local_flink_worker_leaves_its_options_file_in_a_private_folder_and_runs_in_the_launchers(
        tmp_path, monkeypatch):
    # beam-python-boot writes every option, credentials too, to pipeline_options.json
    # in its working folder, then runs `python` from PATH with the file's relative name
    import os

    from pipeline.localflink import worker_boot

    monkeypatch.setenv("PATH", os.environ["PATH"])
    monkeypatch.delenv("RUN_PYTHON_SDK_IN_DEFAULT_ENVIRONMENT", raising=False)
    fake_boot = tmp_path / "fake-boot"
    fake_boot.write_text(FAKE_BOOT)
    fake_boot.chmod(0o700)
    launch = tmp_path / "launch"
    launch.mkdir()
    boot = worker_boot(str(fake_boot), str(launch))
    run = subprocess.run([boot, "--id=1-1"], capture_output=True, text=True, timeout=30, cwd=str(tmp_path))
    assert run.returncode == 0, run.stderr
    cwd, options = run.stdout.splitlines()[:2]
    assert cwd == str(launch) and "secret" in options  # the worker runs where the launcher does
    assert list(launch.iterdir()) == [] and not (tmp_path / "pipeline_options.json").exists()
    written = [p for p in os.listdir(os.path.dirname(boot)) if p.startswith("worker.")]
    assert len(written) == 1  # each boot its own folder: two workers never share the file


def test_the_local_flink_runner_without_its_job_server_is_a_usage_error_naming_the_install(monkeypatch):
    from devservers import flink as installed
    from pipeline.run import streaming_options

    monkeypatch.setattr(type(installed.JOB_SERVER_JAR), "exists", lambda self: False)
    with pytest.raises(ValueError, match="devservers install flink"):
        streaming_options(["--kafka_topic", "t", "--local_runner=flink"])


@pytest.mark.parametrize("flag", ["--destination", "--outcomes", "--deliveries", "--failures"])
def test_memory_outputs_are_refused_on_the_local_flink_runner_whose_workers_are_other_processes(
        flag, monkeypatch):
    import os

    from pipeline.options import UsageError
    monkeypatch.setenv("PATH", os.environ["PATH"])  # as it was, after the launcher's change
    monkeypatch.delenv("RUN_PYTHON_SDK_IN_DEFAULT_ENVIRONMENT", raising=False)
    from pipeline.run import streaming_pipeline

    argv = ["--kafka_topic", "t", "--local_runner", "flink", "--destination", "file:///tmp/x",
            "--outcomes", "kafka://o", "--deliveries", "kafka://d", "--failures", "kafka://f", flag, "memory://x"]
    with pytest.raises(UsageError, match=f"{flag} memory://x is in this process's memory"):
        streaming_pipeline(argv)


def test_cancel_on_an_embedded_cluster_is_nothing_to_do(loopback_only):
    assert flink.cancel_job("[local]", "message-archiver-x") == []


@pytest.mark.parametrize("argv", [
    ["--checkpointing_interval", "10000"], ["--checkpointing_interval=10000"],
    ["--max_bundle_time_mills", "50", "--max_bundle_size=100"],
    ["--savepoint_path", "file:///sp", "--allow_non_restored_state", "true"],
    ["--state_backend=rocksdb", "--state_backend_storage_path", "s3://ckpt/x"],
])
def test_the_flink_runners_own_flags_are_known_in_both_forms(argv):
    assert unknown_flags(argv) == []


def test_a_flink_flag_of_the_wrong_type_is_a_usage_error():
    with pytest.raises(ValueError):
        unknown_flags(["--checkpointing_interval", "often"])


def test_the_flink_flags_reach_the_job_server_in_the_pipeline_options():
    from apache_beam.options.pipeline_options import PipelineOptions

    options = PipelineOptions(["--checkpointing_interval", "10000", "--max_bundle_time_mills=50"])
    assert {k: v for k, v in options.get_all_options(drop_default=True).items()
            if k in ("checkpointing_interval", "max_bundle_time_mills")} == \
        {"checkpointing_interval": 10000, "max_bundle_time_mills": 50}


# --- the job server backport (devservers.flink_sdf_patch) ----------------------------------

def test_an_edit_that_does_not_match_exactly_once_fails_the_install():
    sources = {path: "" for path, _, _ in flink_sdf_patch.EDITS}
    with pytest.raises(DevServerError, match="0 times"):
        flink_sdf_patch.apply_edits(sources)
    path, old, new = flink_sdf_patch.EDITS[0]
    twice = {p: old + old if p == path else "" for p, _, _ in flink_sdf_patch.EDITS}
    with pytest.raises(DevServerError, match="2 times"):
        flink_sdf_patch.apply_edits(twice)


def test_the_installed_job_server_and_cluster_load_the_backport_first():
    flink_cluster.install()
    with zipfile.ZipFile(flink_cluster.PATCH_JAR) as jar:
        names = set(jar.namelist())
    for path in {path for path, _, _ in flink_sdf_patch.EDITS}:
        assert path.replace(".java", ".class") in names
    with zipfile.ZipFile(flink_cluster.JOB_SERVER_JAR) as jar:
        manifest = jar.read("META-INF/MANIFEST.MF").decode().replace("\r\n ", "")
    class_path = [line for line in manifest.splitlines() if line.startswith("Class-Path:")][0].split()[1:]
    assert class_path[0] == f"patch/{flink_cluster.PATCH_JAR.name}" and len(class_path) > 100
    # the patched handler keeps every residual of a key in one map state
    probe = subprocess.run(["javap", "-cp", str(flink_cluster.PATCH_JAR),
                            "org.apache.beam.runners.fnexecution.control.BundleCheckpointHandlers"
                            "$StateAndTimerBundleCheckpointHandler"], capture_output=True, text=True)
    assert "residualsTag" in probe.stdout, probe.stderr
