"""The archive composite and the backfill job, end to end on the local runner."""

import gzip
import hashlib
import json
import os
import subprocess

import lz4.frame
import pyarrow as pa
import pyarrow.parquet as pq
import apache_beam as beam
import pytest
from apache_beam import Map
from apache_beam.testing.util import assert_that, equal_to

from archive.archiver import Archiver
from archive.outcome import ARCHIVED, INVALID
from archive.store import StoreSpec
from pipeline import run
from transforms import ArchiveMessages, SourcedRecord

SENT_AT = 1722443282680  # 2024-07-31T16:28:02.680Z


def clevertap_records():
    common = {"campaign_id": 1722529032, "campaign_name": "Flat Offer Sale", "user_id": 45142169,
              "sent_at": SENT_AT}
    return [
        {"channel": "Email", "to": "Customer@Example.com", "subject": "20% off coupon inside!",
         "from_name": "CleverTap", "from_address": "no-reply@clevertap.com", "html_body": "<p>Hi</p>",
         "plaintext_body": "Hi", "headers": {"X-Campaign": "1"}, "message_id": "m-email-1", **common},
        {"channel": "Push", "to": "frfsgvrwe:APfdsafsg", "payload": {"aps": {"alert": "Hi"}},
         "platform": "iOS", "message_id": "m-push-1", "journey_id": 2450, "journey_node_id": 1,
         "journey_name": "Sale Journey", **common},
        {"channel": "Sms", "to": "+1 555 555 5555", "body": "Hi there!", "provider": "twilio",
         "message_id": "m-sms-1", **common},
        {"channel": "WhatsApp", "to": "447911123456", "body": "Hola", "provider": "twilio", **common},
    ]


BAD_LINES = [
    b"{not json",
    b'{"channel": "sms", "to": "\xff\xfe"}',
    b'{"channel": "fax", "to": "x"}',
    b'{"channel": "sms", "body": "no recipient", "campaign_id": 1, "campaign_name": "c"}',
    b'{"channel": "sms", "to": "12", "body": "b", "campaign_id": 1, "campaign_name": "c"}',
    b'{"channel": "sms", "to": "+15555555555", "body": "b", "campaign_id": 1, "campaign_name": "c",'
    b' "message_id": "../../etc/passwd"}',
]


def jsonl(records):
    return [json.dumps(r).encode() for r in records]


def read_outcomes(folder):
    outcomes = []
    for name in sorted(os.listdir(folder)):
        with open(os.path.join(folder, name), encoding="utf-8") as handle:
            outcomes += [json.loads(line) for line in handle]
    return outcomes


def archive_files(root):
    found = {}
    for folder, _, files in os.walk(os.path.join(root, "sent_messages")):
        for name in files:
            path = os.path.join(folder, name)
            with open(path, "rb") as handle:
                found[os.path.relpath(path, root)] = hashlib.sha256(handle.read()).hexdigest()
    return found


def test_archive_messages_gives_exactly_one_outcome_per_input(test_pipeline, tmp_path):
    good = jsonl(clevertap_records())
    inputs = [SourcedRecord(line, f"test:{i}") for i, line in enumerate(good + BAD_LINES)]
    expected_ids = [Archiver().prepare(line).message_id for line in good]
    with test_pipeline() as p:
        result = p | beam.Create(inputs) | ArchiveMessages(
            StoreSpec(str(tmp_path / "archive"), max_in_flight=4))
        assert_that(result.outcomes | "Status" >> Map(lambda o: (o.status, o.message_id, o.source)),
                    equal_to([(ARCHIVED, mid, f"test:{i}") for i, mid in enumerate(expected_ids)]
                             + [(INVALID, "../../etc/passwd" if i == 5 else None, f"test:{len(good) + i}")
                                for i in range(len(BAD_LINES))]),
                    label="outcomes")
        assert_that(result.dead_letters | "Data" >> Map(lambda d: d.data), equal_to(BAD_LINES),
                    label="dead letters")
    assert len(archive_files(str(tmp_path / "archive"))) == len(good)


def write_inputs(folder, records):
    """The same records spread over every supported input format."""
    os.makedirs(folder)
    lines = jsonl(records)
    with open(os.path.join(folder, "a.jsonl"), "wb") as f:
        f.write(b"\n".join(lines[:1] + BAD_LINES[:3]) + b"\n\n")
    with gzip.open(os.path.join(folder, "b.jsonl.gz"), "wb") as f:
        f.write(b"\n".join(lines[1:2] + BAD_LINES[3:]) + b"\n")
    with lz4.frame.open(os.path.join(folder, "c.jsonl.lz4"), "wb") as f:
        f.write(lines[2] + b"\n")
    rows = [r for r in records[3:]]
    pq.write_table(pa.Table.from_pylist(rows), os.path.join(folder, "d.parquet"))
    return len(records) + len(BAD_LINES)


def run_backfill(tmp_path, *extra, records=None, name="run"):
    base = tmp_path / name
    inputs = str(base / "in")
    total = write_inputs(inputs, records or clevertap_records())
    code = run.main([
        "--input", inputs + "/*", "--destination", str(base / "archive"),
        "--outcomes", str(base / "outcomes"), "--summary", "false", *extra])
    return base, total, code


def system_decompress(path):
    tool = {".lz4": ["lz4", "-dc"], ".gz": ["gzip", "-dc"], ".zst": ["zstd", "-dc"]}[os.path.splitext(path)[1]]
    return subprocess.run(tool + [path], check=True, capture_output=True).stdout


def test_backfill_reads_every_format_and_archives_what_the_system_tools_can_read(tmp_path):
    from archive.schemas import validator

    base, total, code = run_backfill(tmp_path)
    assert code == 0
    outcomes = read_outcomes(base / "outcomes")
    assert len(outcomes) == total
    archived = [o for o in outcomes if o["status"] == ARCHIVED]
    assert len(archived) == len(clevertap_records())
    assert {o["status"] for o in outcomes} == {ARCHIVED, INVALID}
    check = validator("clevertap")
    for outcome in archived:
        path = outcome["url"].removeprefix("file://")
        with open(path, "rb") as handle:
            data = handle.read()
        assert hashlib.sha256(data).hexdigest() == outcome["sha256"]
        assert len(data) == outcome["bytes"]
        payload = json.loads(system_decompress(path))
        check.validate(payload)
        assert payload["message_id"] == outcome["message_id"]
    # every INVALID input is kept whole in the dead letters
    dead = read_outcomes(base / "archive" / "dead_letters")
    assert sorted(d["input_sha256"] for d in dead) == sorted(
        o["input_sha256"] for o in outcomes if o["status"] == INVALID)
    assert sorted(d.get("input", "").encode() for d in dead if "input" in d) == sorted(
        line for line in BAD_LINES if b"\xff" not in line)


def test_outcomes_never_hold_a_recipient(tmp_path):
    base, _, _ = run_backfill(tmp_path)
    text = "\n".join(open(base / "outcomes" / n).read() for n in os.listdir(base / "outcomes"))
    for secret in ("Customer@Example.com", "customer@example.com", "5555555555", "447911123456",
                   "7911123456", "frfsgvrwe"):
        assert secret not in text


def test_rerunning_a_backfill_rewrites_the_same_keys_with_the_same_bytes(tmp_path):
    first, _, _ = run_backfill(tmp_path, name="first")
    files = archive_files(str(first / "archive"))
    run.main(["--input", str(first / "in") + "/*", "--destination", str(first / "archive"),
              "--outcomes", str(first / "outcomes2"), "--summary", "false"])
    assert archive_files(str(first / "archive")) == files
    key = lambda o: tuple(str(o.get(k)) for k in ("status", "message_id", "url", "sha256", "input_sha256"))
    assert sorted(map(key, read_outcomes(first / "outcomes"))) == sorted(
        map(key, read_outcomes(first / "outcomes2")))
    leftovers = [n for _, _, fs in os.walk(first / "archive") for n in fs if n.endswith(".tmp")]
    assert leftovers == []


def braze_records():
    common = {"sent_at": 1722443282, "user_id": "u-1", "external_id": "ext-1"}
    return [
        {"channel": "email", "to": "Customer@Example.com", "subject": "Hi", "from_name": "Braze",
         "from_address": "no-reply@braze.com", "html_body": "<p>x</p>", "extras": {"k": "v"},
         "campaign_id": "c-1", "dispatch_id": "d-email", **common},
        {"channel": "android_push", "to": "Test_Push_Token12345", "payload": {"title": "t"},
         "app_id": "app-1", "canvas_step_id": "step-1", "dispatch_id": "d-push", **common},
        {"channel": "mms", "to": "+15555555555", "body": "pic", "media_urls": ["https://x/y.png"],
         "dispatch_id": "d-mms", **common},
        {"channel": "sms", "to": "+447911123456", "body": "Hi", "subscription_group": "sg",
         "campaign_id": "c-2", **common},
    ]


@pytest.mark.parametrize("compression,suffix", [(None, ".json.gz"), ("lz4", ".json.lz4"),
                                                ("zstd", ".json.zst"), ("none", ".json")])
def test_braze_backfill_keys_and_compression(tmp_path, compression, suffix):
    from archive.schemas import validator

    extra = ["--profile", "braze"] + (["--compression", compression] if compression else [])
    base, _, code = run_backfill(tmp_path, *extra, records=braze_records())
    assert code == 0
    keys = sorted(archive_files(str(base / "archive")))
    assert "sent_messages/push/32b802170652af2b5624b695f34de089/step-1/d-push" + suffix in keys
    assert "sent_messages/sms/" + hashlib.md5(b"+15555555555").hexdigest() + "/unassociated/d-mms" + suffix in keys
    assert all(k.endswith(suffix) for k in keys) and len(keys) == 4
    for key in keys:
        path = str(base / "archive" / key)
        data = system_decompress(path) if suffix != ".json" else open(path, "rb").read()
        validator("braze").validate(json.loads(data))


def test_usage_errors_exit_2(tmp_path, capsys):
    assert run.main(["--destination", str(tmp_path)]) == 2
    assert run.main(["--input", "x", "--storage_options", "[1]"]) == 2
    assert "storage_options" in capsys.readouterr().err


def test_store_failures_are_retried_by_class_and_spent_retries_are_failed(test_pipeline):
    import errno

    import fsspec

    from archive.retry import RetryPolicy
    from tests import faultfs  # noqa: F401  registers faulty://

    lines = jsonl(clevertap_records())
    keys = [Archiver().prepare(line).key for line in lines]
    fs = fsspec.filesystem("faulty")
    root = "faulty://archive-bucket"
    fs.fail(f"{root}/{keys[0]}", [OSError(errno.EBUSY, "SlowDown"), ConnectionResetError("reset")])
    fs.fail(f"{root}/{keys[1]}", [PermissionError("AccessDenied")] * 10)
    spec = StoreSpec(root, retry=RetryPolicy(base_delay=0.001, max_delay=0.01, hold_seconds=0))
    with test_pipeline() as p:
        result = p | beam.Create(lines) | ArchiveMessages(spec)
        assert_that(
            result.outcomes | Map(lambda o: (o.message_id, o.status, o.attempts, o.error_class)),
            equal_to([
                ("m-email-1", ARCHIVED, 3, None),
                ("m-push-1", "FAILED", 4, "auth"),
                ("m-sms-1", ARCHIVED, 1, None),
                (Archiver().prepare(lines[3]).message_id, ARCHIVED, 1, None),
            ]))
    assert fs.attempts_at(f"{root}/{keys[1]}") == 4
    assert not fs.exists(f"{root}/{keys[1]}")
    assert fs.cat_file(f"{root}/{keys[0]}") == Archiver().prepare(lines[0]).data


def test_backfill_exits_3_when_a_message_failed_to_archive(tmp_path):
    import fsspec

    from tests import faultfs  # noqa: F401

    lines = jsonl(clevertap_records())
    fs = fsspec.filesystem("faulty")
    fs.fail("faulty://exit-bucket/" + Archiver().prepare(lines[2]).key, [PermissionError("AccessDenied")] * 4)
    source = tmp_path / "in.jsonl"
    source.write_bytes(b"\n".join(lines))
    code = run.main(["--input", str(source), "--destination", "faulty://exit-bucket",
                     "--outcomes", str(tmp_path / "outcomes"), "--retry_base_delay", "0.001",
                     "--dead_letters", str(tmp_path / "dead"), "--summary", "false"])
    assert code == run.EXIT_FAILED_MESSAGES
    failed = [o for o in read_outcomes(tmp_path / "outcomes") if o["status"] == "FAILED"]
    assert [o["message_id"] for o in failed] == ["m-sms-1"]
    assert failed[0]["error"].startswith("failed to archive: PermissionError")


def test_every_flag_of_the_job_has_help_text(capsys):
    import argparse

    from pipeline.options import ArchiveOptions

    parser = argparse.ArgumentParser()
    ArchiveOptions._add_argparse_args(parser)
    flags = [a for a in parser._actions if a.option_strings and a.dest != "help"]
    assert len(flags) > 25
    assert [a.option_strings[0] for a in flags if not (a.help or "").strip()] == []
    assert run.main(["--help"]) == 0
    shown = capsys.readouterr().out
    assert all(a.option_strings[0] in shown for a in flags) and "--runner" in shown
