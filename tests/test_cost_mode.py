"""Cost mode and the archive's other shapes, end to end against the S3 server (moto on 127.0.0.1):
batched objects, email as .eml, and a tenant's own key template.

Every run is the job itself (pipeline.run.main, or `python -m pipeline.run` for
a stream), every object is read back with boto3, and requests are counted by a
FaultProxy in front of the server: the PUTs a mode costs are what the store saw.
"""

import email
import email.policy
import gzip
import hashlib
import json
import os
import subprocess
import uuid

import lz4.frame
import pytest

from archive import frames
from archive.batches import parse_object_key
from devservers.faultproxy import FaultProxy
from pipeline import run
from tests.hostile import hostile_records
from tests.test_pipeline import braze_records, clevertap_records, read_outcomes
from tests.test_retrieval import go_eml_reader  # noqa: F401  (a fixture: Go's net/mail reader)

SENT_AT = 1722443282680


def many(count, minutes=3):
    """`count` distinct valid clevertap messages over every channel, spread over `minutes` windows."""
    records = clevertap_records()
    return [{**records[i % len(records)], "message_id": f"m-{i:05d}",
             "sent_at": SENT_AT + (i % minutes) * 60_000} for i in range(count)]


def job(tmp_path, lines, *args):
    """Run a backfill of `lines` (bytes each); (exit code, outcomes, dead letters)."""
    name = uuid.uuid4().hex[:6]
    source = tmp_path / f"in-{name}.jsonl"
    source.write_bytes(b"\n".join(lines) + b"\n")
    outcomes, dead = tmp_path / f"outcomes-{name}", tmp_path / f"dead-{name}"
    code = run.main(["--input", str(source), "--outcomes", str(outcomes), "--dead_letters", str(dead),
                     "--summary", "false", "--retry_base_delay", "0.01", "--retry_max_delay", "0.05", *args])
    dead_letters = [json.loads(line) for f in sorted(os.listdir(dead)) for line in open(dead / f)] \
        if dead.exists() else []
    return code, read_outcomes(outcomes), dead_letters


def s3(s3_server, proxy=None):
    bucket = s3_server.create_bucket(f"cost-{uuid.uuid4().hex[:8]}")
    options = s3_server.storage_options(proxy.url if proxy else None)
    return bucket, ["--destination", f"s3://{bucket}", "--storage_options", json.dumps(options)]


def keys(s3_server, bucket, prefix=""):
    pages = s3_server.boto3_client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return sorted(o["Key"] for page in pages for o in page.get("Contents", []))


def get(s3_server, bucket, key, first=None, length=None):
    extra = {"Range": f"bytes={first}-{first + length - 1}"} if first is not None else {}
    return s3_server.boto3_client().get_object(Bucket=bucket, Key=key, **extra)["Body"].read()


# --- batched objects ----------------------------------------------------------------------------

def test_hostile_input_in_cost_mode_gets_one_outcome_each_and_the_valid_land_in_batch_objects(
        s3_server, tmp_path):
    hostile = [raw for raw, _ in hostile_records(13, 300) if b"\n" not in raw and b"\r" not in raw]
    valid = [json.dumps(r).encode() for r in many(200)]
    lines = hostile + valid + valid[:5]  # five sent twice: one copy each in the object, two outcomes
    with FaultProxy(s3_server.endpoint_url) as proxy:
        bucket, flags = s3(s3_server, proxy)
        code, outcomes, dead = job(tmp_path, lines, *flags, "--object_mode", "batched")
        archive_puts = proxy.count("PUT", r"/sent_batches/")
    assert code in (0, run.EXIT_FAILED_MESSAGES)
    assert len(outcomes) == len(lines)  # exactly one outcome per input record
    statuses = {o["status"] for o in outcomes}
    assert statuses <= {"ARCHIVED", "INVALID", "FAILED"}
    invalid = [o for o in outcomes if o["status"] == "INVALID"]
    assert len(dead) == len(invalid) + len([o for o in outcomes if o["status"] == "FAILED"])
    archived = [o for o in outcomes if o["status"] == "ARCHIVED"]
    objects = keys(s3_server, bucket, "sent_batches/")
    assert archive_puts == len(objects) == len({o["url"] for o in archived})  # one PUT per object
    valid_objects = {o["url"] for o in archived if o["message_id"].startswith("m-")}
    assert len(valid_objects) == 3 * 4  # 200 messages: 3 windows x 4 channels
    for outcome in archived:
        key = outcome["url"].split(bucket + "/", 1)[1]
        assert parse_object_key(key) is not None, key
        frame = get(s3_server, bucket, key, outcome["byte_offset"], outcome["bytes"])
        assert hashlib.sha256(frame).hexdigest() == outcome["sha256"]
        payload = json.loads(frames.read_frame("lz4", frame))
        assert payload["message_id"] == outcome["message_id"]
    for key in objects:  # each object: JSON Lines to the lz4 CLI, every line strict JSON
        body = get(s3_server, bucket, key)
        text = subprocess.run(["lz4", "-dc"], input=body, capture_output=True, check=True).stdout
        assert [json.loads(line, parse_constant=_refuse)["version"] for line in text.splitlines()]
    lines_in_objects = sum(len(frames.spans("lz4", get(s3_server, bucket, k))) for k in objects)
    assert lines_in_objects == len({o["message_id"] for o in archived})


def _refuse(name):
    raise ValueError(name)


@pytest.mark.parametrize("profile, codec", [("clevertap", "lz4"), ("braze", "gzip"), ("clevertap", "zstd")])
def test_each_message_in_a_batch_is_exactly_the_object_message_mode_writes(s3_server, tmp_path, profile, codec):
    records = clevertap_records() if profile == "clevertap" else braze_records()
    lines = [json.dumps(r).encode() for r in records]
    bucket, flags = s3(s3_server)
    _, alone, _ = job(tmp_path, lines, *flags, "--profile", profile, "--compression", codec)
    other, other_flags = s3(s3_server)
    code, batched, _ = job(tmp_path, lines, *other_flags, "--profile", profile, "--compression", codec,
                           "--object_mode", "batched")
    assert code == 0 and {o["status"] for o in batched} == {"ARCHIVED"}
    decompress = {"lz4": lz4.frame.decompress, "gzip": gzip.decompress,
                  "zstd": lambda b: __import__("zstandard").ZstdDecompressor().decompress(b)}[codec]
    single = {o["message_id"]: decompress(get(s3_server, bucket, o["url"].split(bucket + "/", 1)[1]))
              for o in alone}
    for outcome in batched:
        key = outcome["url"].split(other + "/", 1)[1]
        frame = get(s3_server, other, key, outcome["byte_offset"], outcome["bytes"])
        assert frames.read_frame(codec, frame) == single[outcome["message_id"]]  # byte for byte
    cli = {"lz4": ["lz4", "-dc"], "gzip": ["gzip", "-dc"], "zstd": ["zstd", "-dc"]}[codec]
    for key in keys(s3_server, other, "sent_batches/"):
        out = subprocess.run(cli, input=get(s3_server, other, key), capture_output=True, check=True).stdout
        assert set(out.splitlines()) <= set(single.values())


def test_a_rerun_rewrites_the_same_batch_objects_with_the_same_bytes(s3_server, tmp_path):
    lines = [json.dumps(r).encode() for r in many(300)]
    bucket, flags = s3(s3_server)
    limits = ["--object_mode", "batched", "--batch_max_messages", "40", "--batch_shards", "2"]
    code, first, _ = job(tmp_path, lines, *flags, *limits)
    assert code == 0
    before = {k: get(s3_server, bucket, k) for k in keys(s3_server, bucket, "sent_batches/")}
    assert len(before) >= 3 * 2 * 2  # windows x shards, cut at 40 messages
    assert all(len(frames.spans("lz4", body)) <= 40 for body in before.values())
    code, again, _ = job(tmp_path, list(reversed(lines)), *flags, *limits)  # another order, same objects
    assert code == 0
    after = {k: get(s3_server, bucket, k) for k in keys(s3_server, bucket, "sent_batches/")}
    assert after == before
    assert all(o.get("existed") for o in again)
    place = {o["message_id"]: (o["url"], o["byte_offset"], o["sha256"]) for o in first}
    assert {o["message_id"]: (o["url"], o["byte_offset"], o["sha256"]) for o in again} == place
    # the audit index names each message's object, range and frame digest, as its outcome does
    from retrieval.bucket import Bucket
    from retrieval.index import AuditIndex
    rows = AuditIndex(Bucket(f"s3://{bucket}", s3_server.storage_options())).find().to_pylist()
    assert {(r["message_id"], f"s3://{bucket}/{r['key']}", r["byte_offset"], r["sha256"]) for r in rows} == {
        (message_id, *where) for message_id, where in place.items()}


def test_a_batch_whose_write_fails_fails_every_message_in_it_and_keeps_each_as_a_dead_letter(
        s3_server, tmp_path):
    lines = [json.dumps(r).encode() for r in many(60, minutes=1)]
    with FaultProxy(s3_server.endpoint_url) as proxy:
        proxy.s3_error(400, "InvalidRequest", "refused by the test", None, method="PUT", path=r"/sent_batches/")
        _, flags = s3(s3_server, proxy)
        code, outcomes, dead = job(tmp_path, lines, *flags, "--object_mode", "batched")
    assert code == run.EXIT_FAILED_MESSAGES
    assert [o["status"] for o in outcomes] == ["FAILED"] * 60
    assert sorted(d["input"] for d in dead) == sorted(line.decode() for line in lines)  # nothing lost


def test_a_batch_key_holding_other_bytes_is_never_replaced_the_batch_takes_the_next_part(s3_server, tmp_path):
    lines = [json.dumps(r).encode() for r in many(10, minutes=1)]
    bucket, flags = s3(s3_server)
    code, first, _ = job(tmp_path, lines[:5], *flags, "--object_mode", "batched")
    key = first[0]["url"].split(bucket + "/", 1)[1]
    original = get(s3_server, bucket, key)
    code, second, _ = job(tmp_path, lines, *flags, "--object_mode", "batched")
    assert code == 0 and {o["status"] for o in second} == {"ARCHIVED"}
    assert get(s3_server, bucket, key) == original  # another run's object, untouched
    assert {o["url"].rsplit("-", 1)[1] for o in second} == {"p0001.jsonl.lz4"}


# --- .eml ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("profile", ["clevertap", "braze"])
@pytest.mark.parametrize("form", ["eml", "both"])
def test_email_as_eml_reads_back_with_two_parsers(s3_server, tmp_path, go_eml_reader, profile, form):  # noqa: F811
    records = clevertap_records() if profile == "clevertap" else braze_records()
    email_record = dict(next(r for r in records if r["channel"].lower() == "email"))
    email_record.update(subject="Ünïcode\r\nBcc: injected@example.com", amp_body="<html amp4email>a</html>")
    if profile == "braze":
        email_record["attachments"] = [{"file_name": "a.txt", "bytes": "aGVsbG8="}]
    lines = [json.dumps(r).encode() for r in [email_record] + [r for r in records if r is not email_record][1:]]
    bucket, flags = s3(s3_server)
    code, outcomes, _ = job(tmp_path, lines, *flags, "--profile", profile, "--email_format", form)
    assert code == 0 and {o["status"] for o in outcomes} == {"ARCHIVED"}
    [mail] = [o for o in outcomes if o["channel"] == "email"]
    codec = {"clevertap": lz4.frame.decompress, "braze": gzip.decompress}[profile]
    eml_url = mail["eml_url"] if form == "both" else mail["url"]
    key = eml_url.split(bucket + "/", 1)[1]
    assert key.endswith(".eml.lz4" if profile == "clevertap" else ".eml.gz")
    raw = codec(get(s3_server, bucket, key))
    if form == "both":
        json_key = mail["url"].split(bucket + "/", 1)[1]
        assert json_key[:-len(".json.lz4")] == key[:-len(".eml.lz4")] if profile == "clevertap" else True
        payload = json.loads(codec(get(s3_server, bucket, json_key)))
        assert hashlib.sha256(get(s3_server, bucket, json_key)).hexdigest() == mail["sha256"]
    else:
        assert hashlib.sha256(get(s3_server, bucket, key)).hexdigest() == mail["sha256"]
        payload = None
    path = tmp_path / "m.eml"
    path.write_bytes(raw)
    ours = email.message_from_bytes(raw, policy=email.policy.default)
    assert not ours.defects
    assert ours["Bcc"] is None or "injected" not in str(ours["Bcc"])  # the subject's line break: one line
    [theirs] = [json.loads(line) for line in subprocess.run(
        [go_eml_reader, str(path)], check=True, capture_output=True, text=True, timeout=60).stdout.splitlines()]
    assert ours["Subject"] == theirs["subject"] == "Ünïcode Bcc: injected@example.com"
    types = {p["content_type"] for p in theirs["parts"]}
    assert {"text/html", "text/x-amp-html"} <= types
    assert ours.get_content_type() == ("multipart/mixed" if profile == "braze" else "multipart/alternative")
    if payload is not None:
        assert ours["X-Archive-Sha256"] == mail["sha256"]
        assert theirs["subject"] == payload["subject"].replace("\r\n", " ")
    # other channels stay JSON
    assert all(o["url"].split(bucket + "/", 1)[1].rsplit(".", 2)[-2] == "json"
               for o in outcomes if o["channel"] != "email")


def test_eml_bytes_are_the_same_on_a_rerun(s3_server, tmp_path):
    lines = [json.dumps(r).encode() for r in braze_records()]
    bucket, flags = s3(s3_server)
    job(tmp_path, lines, *flags, "--profile", "braze", "--email_format", "both")
    before = {k: get(s3_server, bucket, k) for k in keys(s3_server, bucket, "sent_messages/")}
    code, again, _ = job(tmp_path, lines, *flags, "--profile", "braze", "--email_format", "both")
    assert code == 0 and all(o.get("existed") for o in again)
    assert {k: get(s3_server, bucket, k) for k in keys(s3_server, bucket, "sent_messages/")} == before


# --- key templates and per-tenant shapes ------------------------------------------------------------

def test_each_tenant_archives_in_its_own_shape(s3_server, tmp_path):
    buckets = {name: s3_server.create_bucket(f"{name}-{uuid.uuid4().hex[:8]}") for name in ("acme", "globex")}
    template = "archive/{tenant}/{channel}/{yyyy}/{mm}/{dd}/{recipient_md5}/{message_id}"
    tenants = tmp_path / "tenants.yaml"
    tenants.write_text(
        "tenants:\n"
        "  acme:\n    object_mode: batched\n    batch: {seconds: 300, max_messages: 100}\n"
        f"    destinations:\n      - url: s3://{buckets['acme']}\n"
        f"        storage_options: {json.dumps(s3_server.storage_options())}\n"
        f"  globex:\n    key_template: {template}\n    email_format: both\n"
        f"    destinations:\n      - url: s3://{buckets['globex']}\n"
        f"        storage_options: {json.dumps(s3_server.storage_options())}\n")
    lines = [json.dumps({**r, "tenant": tenant}).encode() for tenant in ("acme", "globex") for r in many(40)]
    code, outcomes, _ = job(tmp_path, lines, "--tenants", str(tenants))
    assert code == 0 and len(outcomes) == 80 and {o["status"] for o in outcomes} == {"ARCHIVED"}
    acme = keys(s3_server, buckets["acme"], "sent_batches/")
    assert acme and all(k.startswith("sent_batches/acme/") for k in acme) and len(acme) < 40
    globex = keys(s3_server, buckets["globex"], "archive/")
    assert len(globex) == 40 + 10  # one object each, and an .eml beside each of the 10 emails
    import re
    pattern = re.compile(r"archive/globex/(email|push|sms|whatsapp)/2024/07/31/[0-9a-f]{32}/m-\d{5}\.(json|eml)\.lz4")
    assert all(pattern.fullmatch(k) for k in globex), globex[:3]
    assert keys(s3_server, buckets["globex"], "sent_messages/") == []


def test_a_bad_template_or_mode_on_the_command_line_is_a_usage_error(tmp_path, capsys):
    source = tmp_path / "in.jsonl"
    source.write_bytes(json.dumps(clevertap_records()[0]).encode() + b"\n")
    for flags, why in ((["--key_template", "archive/{channel}/{message_id}"], "no {recipient_md5}"),
                       (["--key_template", "archive/../{channel}/{recipient_md5}/{message_id}"], "'..'"),
                       (["--object_mode", "batched", "--email_format", "eml"], "only --email_format json"),
                       (["--object_mode", "batched", "--batch_seconds", "7"], "--batch_seconds must divide")):
        code = run.main(["--input", str(source), "--destination", str(tmp_path / "out"),
                         "--outcomes", str(tmp_path / "outcomes"), "--summary", "false", *flags])
        assert code == run.EXIT_USAGE, flags
        assert why in capsys.readouterr().err
    assert not (tmp_path / "out").exists() and not (tmp_path / "outcomes").exists()


# --- a stream in cost mode: the gate waits for the batch object ------------------------------------

@pytest.mark.parametrize("local_runner", ["prism", "flink"])
def test_a_batched_stream_delivers_each_message_only_once_its_batch_object_is_durable(s3_server, local_runner):
    from devservers import kafka
    from tests.test_streaming import Reader, StreamingJob, messages, outcome_key, publish
    from tests.test_pipeline import BAD_LINES

    with kafka.start() as broker:
        topic = f"batched-{uuid.uuid4().hex[:8]}"
        broker.create_topic(topic, partitions=2)
        bucket = s3_server.create_bucket(f"stream-{uuid.uuid4().hex[:8]}")
        values = messages(150, "b") + BAD_LINES[:2]
        with FaultProxy(s3_server.endpoint_url) as proxy:
            job = StreamingJob(broker, s3_server, bucket, topic, proxy.url, "--local_runner", local_runner,
                               "--object_mode", "batched", "--batch_seconds", "2",
                               "--audit_index_flush_seconds", "1")
            reader = Reader(broker, job.topics)
            publish(broker, topic, values)
            job.start()
            try:
                assert reader.until(lambda seen: len(seen["deliveries"]) >= 150 and len(seen["outcomes"]) >= 152,
                                    240), f"{len(reader.seen['deliveries'])} deliveries"
            finally:
                job.stop()
            puts = proxy.count("PUT", r"/sent_batches/")
        outcomes = reader.outcomes()
        reader.close()
    assert len({outcome_key(o) for o in outcomes}) == len(outcomes) == 152
    archived = {o["message_id"]: o for o in outcomes if o["status"] == "ARCHIVED"}
    assert len(archived) == 150
    delivered = {m.key().decode(): m for m in reader.seen["deliveries"]}
    assert set(delivered) == set(archived)
    objects = keys(s3_server, bucket, "sent_batches/")
    assert puts == len(objects) == len({o["url"] for o in archived.values()}) < 150 / 5
    for message_id, message in delivered.items():
        outcome = archived[message_id]
        frame = get(s3_server, bucket, outcome["url"].split(bucket + "/", 1)[1], outcome["byte_offset"],
                    outcome["bytes"])
        assert hashlib.sha256(frame).hexdigest() == outcome["sha256"]
        assert json.loads(frames.read_frame("lz4", frame))["message_id"] == message_id
        assert json.loads(message.value())["message_id"] == message_id
        headers = dict(message.headers())  # delivery can find the frame from the record alone
        assert (int(headers["archive_byte_offset"]), int(headers["archive_bytes"])) == (
            outcome["byte_offset"], outcome["bytes"])
