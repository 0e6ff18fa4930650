"""The command line: usage errors exit 2 with one line, Beam's own flags still pass.

Each usage error runs `python -m pipeline.run` as a user would, in its own process,
and must end before any pipeline starts: exit 2, one line on stderr, no traceback.
"""

import json
import os
import subprocess
import sys

import pytest

from pipeline import options as archive_options
from pipeline import run

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GOOD = json.dumps({"channel": "sms", "to": "+15555555555", "body": "hi", "campaign_id": 1,
                   "campaign_name": "c", "sent_at": 1722443282680, "message_id": "cli-1"})


def job(argv, cwd, timeout=120):
    return subprocess.run([sys.executable, "-m", "pipeline.run", *argv], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout,
                          # a job that got past its checks would reach only a closed loopback port
                          env={**os.environ, "PYTHONPATH": ROOT, "PUBSUB_EMULATOR_HOST": "127.0.0.1:9"})


def stderr_lines(completed):
    # Beam's import may warn about apitools on stderr before our code runs: not ours.
    return [line for line in completed.stderr.splitlines() if line.strip() and "apitools" not in line]


@pytest.fixture
def inputs(tmp_path):
    path = tmp_path / "in.jsonl"
    path.write_text(GOOD + "\n")
    (tmp_path / "tenants-dir").mkdir()
    (tmp_path / "not-json").write_text("{nope")
    return str(path)


LOOPBACK_S3 = json.dumps({"client_kwargs": {"endpoint_url": "http://127.0.0.1:9"}})

# (argv after --input/--kafka_topic, words the one line must hold)
BATCH_USAGE_ERRORS = [
    pytest.param(["--destinaton", "x"], ["--destinaton", "--destination"], id="misspelled-flag"),
    pytest.param(["--destinaton=x"], ["--destinaton", "--destination"], id="misspelled-flag-with-equals"),
    pytest.param(["--max_inflight", "3"], ["--max_inflight", "--max_in_flight"], id="misspelled-flag-2"),
    pytest.param(["--no_such_thing"], ["--no_such_thing"], id="unknown-switch"),
    pytest.param(["-x", "1"], ["-x"], id="single-dash"),
    pytest.param(["stray"], ["stray"], id="positional"),
    pytest.param(["--max_in_flight", "0"], ["--max_in_flight"], id="max-in-flight-zero"),
    pytest.param(["--max_in_flight", "-4"], ["--max_in_flight"], id="max-in-flight-negative"),
    pytest.param(["--max_in_flight", "many"], ["--max_in_flight"], id="max-in-flight-not-a-number"),
    pytest.param(["--transient_retries", "-1"], ["--transient_retries"], id="negative-transient-retries"),
    pytest.param(["--other_retries", "-2"], ["--other_retries"], id="negative-other-retries"),
    pytest.param(["--retry_base_delay", "-0.5"], ["--retry_base_delay"], id="negative-base-delay"),
    pytest.param(["--retry_max_delay", "-1"], ["--retry_max_delay"], id="negative-max-delay"),
    pytest.param(["--retry_base_delay", "5", "--retry_max_delay", "1"], ["--retry_max_delay"],
                 id="max-delay-below-base"),
    pytest.param(["--retry_base_delay", "nan"], ["--retry_base_delay"], id="nan-delay"),
    pytest.param(["--breaker_cooldown", "-1"], ["--breaker_cooldown"], id="negative-cooldown"),
    pytest.param(["--max_message_bytes", "0"], ["--max_message_bytes"], id="zero-message-bytes"),
    pytest.param(["--default_region", "XX"], ["--default_region", "XX"], id="unknown-region"),
    pytest.param(["--default_region", "USA"], ["--default_region"], id="region-not-iso"),
    pytest.param(["--profile", "mailchimp"], ["--profile", "mailchimp"], id="unknown-profile"),
    pytest.param(["--compression", "bz2"], ["--compression", "bz2"], id="unknown-compression"),
    pytest.param(["--storage_options", "{bad"], ["--storage_options"], id="storage-options-not-json"),
    pytest.param(["--storage_options", "[1]"], ["--storage_options"], id="storage-options-not-object"),
    pytest.param(["--summary", "maybe"], ["--summary"], id="summary-not-a-flag"),
    pytest.param(["--tenants", "{tmp}/missing.yaml", "--dead_letters", "{tmp}/dl"], ["--tenants", "missing.yaml"],
                 id="missing-tenant-file"),
    pytest.param(["--tenants", "{tmp}/missing.yaml"], ["--dead_letters"], id="tenants-without-dead-letters"),
    pytest.param(["--tenants", "{tmp}/tenants-dir", "--dead_letters", "{tmp}/dl"], ["--tenants"],
                 id="unreadable-tenant-file"),
    pytest.param(["--tenants", "{tmp}/not-json", "--dead_letters", "{tmp}/dl"], ["not-json"],
                 id="tenant-file-not-yaml"),
    pytest.param(["--run_id", "../../etc"], ["--run_id"], id="run-id-path"),
    pytest.param(["--run_id", ".hidden"], ["--run_id"], id="run-id-hidden"),
    pytest.param(["--run_id", "a b"], ["--run_id"], id="run-id-space"),
    pytest.param(["--run_id", "x" * 65], ["--run_id"], id="run-id-too-long"),
    pytest.param(["--spill_dir", "s3://bucket/spill"], ["--spill_dir"], id="spill-dir-not-local"),
    # (a closed loopback endpoint: were the URL not refused, nothing would leave the machine)
    pytest.param(["--outcomes", "s3://AKIAOUTCOMES:s3cr3t@bucket/o", "--storage_options", LOOPBACK_S3],
                 ["--outcomes"], id="credentials-in-outcomes-url"),
    pytest.param(["--dead_letters", "s3://AKIADEAD:s3cr3t@bucket/d", "--storage_options", LOOPBACK_S3],
                 ["--dead_letters"], id="credentials-in-dead-letters-url"),
]


@pytest.mark.parametrize("argv, words", BATCH_USAGE_ERRORS)
def test_a_batch_usage_error_exits_2_with_one_line_and_no_traceback(tmp_path, inputs, argv, words):
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    completed = job(["--input", inputs, "--destination", str(tmp_path / "archive"),
                     "--outcomes", str(tmp_path / "outcomes"), *argv], cwd=tmp_path)
    lines = stderr_lines(completed)
    assert completed.returncode == 2, completed.stderr
    assert len(lines) == 1, lines
    assert "Traceback" not in completed.stderr
    assert all(word in lines[0] for word in words), lines[0]
    assert "s3cr3t" not in completed.stderr + completed.stdout
    assert not (tmp_path / "archive").exists() and not (tmp_path / "outcomes").exists()


INPUT_ERRORS = [
    pytest.param([], ["--input"], id="no-input"),
    pytest.param(["--input", "{tmp}/nowhere/*.jsonl"], ["nowhere"], id="pattern-matches-nothing"),
    pytest.param(["--input", "{tmp}/missing.jsonl"], ["missing.jsonl"], id="missing-file"),
    pytest.param(["--input", "{tmp}/in.jsonl,{tmp}/gone.jsonl"], ["gone.jsonl"], id="one-of-two-missing"),
    pytest.param(["--input", "{tmp}/tenants-dir"], ["tenants-dir"], id="empty-folder"),
]


@pytest.mark.parametrize("argv, words", INPUT_ERRORS)
def test_an_input_that_matches_nothing_is_a_usage_error(tmp_path, inputs, argv, words):
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    completed = job([*argv, "--destination", str(tmp_path / "archive"),
                     "--outcomes", str(tmp_path / "outcomes")], cwd=tmp_path)
    lines = stderr_lines(completed)
    assert (completed.returncode, len(lines)) == (2, 1), completed.stderr
    assert "Traceback" not in completed.stderr
    assert all(word in lines[0] for word in words), lines[0]


STREAMING_USAGE_ERRORS = [
    pytest.param(["--kafka_topc", "t"], ["--kafka_topc", "--kafka_topic"], id="misspelled-streaming-flag"),
    pytest.param(["--max_in_flight", "0"], ["--max_in_flight"], id="max-in-flight-zero"),
    pytest.param(["--default_region", "QQ"], ["--default_region"], id="unknown-region"),
    pytest.param(["--kafka_reader", "xlang"], ["--expansion_service"], id="xlang-without-expansion-service"),
    pytest.param(["--tenants", "{tmp}/missing.yaml"], ["missing.yaml"], id="missing-tenant-file"),
    pytest.param(["--storage_options", "{"], ["--storage_options"], id="bad-storage-options"),
    pytest.param(["--run_id", "a/b"], ["--run_id"], id="bad-run-id"),
]


@pytest.mark.parametrize("source", ["kafka", "pubsub"])
@pytest.mark.parametrize("argv, words", STREAMING_USAGE_ERRORS)
def test_a_streaming_usage_error_exits_2_before_any_runner_starts(tmp_path, source, argv, words):
    if source == "pubsub" and "--kafka_reader" in argv:
        argv = ["--kafka_topic", "t", *argv]  # xlang is Kafka's: the topic makes it a Kafka job
    stream = ["--kafka_topic", "t"] if source == "kafka" else [
        "--pubsub_subscription", "projects/p/subscriptions/s"]
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    # a port nothing listens on: a job that got as far as connecting would hang, not exit 2
    completed = job([*stream, "--kafka_bootstrap_servers", "127.0.0.1:9", "--destination",
                     str(tmp_path / "archive"), *argv], cwd=tmp_path, timeout=60)
    lines = stderr_lines(completed)
    assert (completed.returncode, len(lines)) == (2, 1), completed.stderr
    assert "Traceback" not in completed.stderr
    assert all(word in lines[0] for word in words), lines[0]


def test_beam_flags_are_still_accepted(tmp_path, inputs):
    completed = job(["--input", inputs, "--destination", str(tmp_path / "archive"),
                     "--outcomes", str(tmp_path / "outcomes"), "--summary", "false",
                     "--runner", "DirectRunner", "--direct_num_workers=1", "--environment_type", "LOOPBACK",
                     "--flink_master", "localhost:8081", "--job_name", "cli-test", "--experiments", "x",
                     ], cwd=tmp_path)
    assert completed.returncode == 0, completed.stderr
    [outcome] = [json.loads(line) for name in os.listdir(tmp_path / "outcomes")
                 for line in open(tmp_path / "outcomes" / name)]
    assert outcome["status"] == "ARCHIVED"


@pytest.mark.parametrize("argv, unknown", [
    pytest.param(["--runner", "FlinkRunner", "--flink_master=h:1", "--streaming", "--parallelism", "2"], [],
                 id="beam-flags"),
    pytest.param(["--prism_location", "/x", "--environment_type=LOOPBACK", "--direct_running_mode",
                  "multi_threading", "--project", "p", "--temp_location", "gs://t"], [], id="more-beam-flags"),
    pytest.param(["--input", "x", "--destinaton", "y"], [("--destinaton", "--destination")], id="typo"),
    pytest.param(["--input=x", "--outcome=y"], [("--outcome", "--outcomes")], id="typo-equals"),
    pytest.param(["--zzzzzz"], [("--zzzzzz", None)], id="nothing-close"),
    pytest.param(["--input", "x", "loose"], [("loose", None)], id="positional"),
])
def test_unknown_flags_are_those_no_options_class_knows(argv, unknown):
    assert archive_options.unknown_flags(argv) == unknown


def test_usage_error_in_process_is_one_line(tmp_path, capsys):
    assert run.main(["--input", str(tmp_path / "none.jsonl"), "--destinaton", "x"]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and "--destination" in err[0]
