"""Retrieval against real stores: a local folder, moto (S3), Azurite and fake-gcs-server.

Each destination is filled by the pipeline itself (both profiles, every channel),
with the audit index it writes; then `message-archiver` finds, shows, verifies,
exports and erases as a compliance officer would, through its console entry
point (in-process, to keep the suite quick; tests/test_dataflow.py runs the
installed script). Hostile cases first: refused endpoints, garbage objects,
deleted and altered objects, locked objects.
"""

from __future__ import annotations

import contextlib
import email
import email.policy
import gzip
import hashlib
import io
import json
import os
import subprocess
import uuid
import zipfile

import pytest

from archive import audit
from archive.sample import samples
from cli import main as message_archiver
from pipeline import run
from retrieval.bucket import Bucket
from retrieval.index import AuditIndex, rebuild
from tests.test_transport import environment, loopback_only  # noqa: F401 - fixtures

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COUNT = 120
PROFILES = ("clevertap", "braze")


def cli(*argv) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = message_archiver(list(argv))
    return status, out.getvalue(), err.getvalue()


def cli_json(*argv) -> tuple[int, dict]:
    status, out, err = cli(*argv, "--json")
    assert out.strip(), err
    return status, json.loads(out)


class Archive:
    """One destination the pipeline filled with one profile's sample."""

    def __init__(self, url: str, options: dict, profile: str, work, records: list[dict],
                 pipeline_flags: list[str] = (), read_flags: list[str] = ()):
        """`pipeline_flags`: the archive's shape (tests/test_retrieval_layouts.py); `read_flags`:
        what retrieval needs besides the destination to read it."""
        self.url, self.options, self.profile, self.records = url, options, profile, records
        destination = ["--destination", url, "--storage_options", json.dumps(options)]
        self.flags = destination + list(read_flags)
        outcomes = work / f"outcomes-{uuid.uuid4().hex[:6]}"
        inputs = work / f"in-{profile}-{uuid.uuid4().hex[:6]}.jsonl"
        inputs.write_bytes(b"".join(json.dumps(r).encode() + b"\n" for r in records))
        status = run.main(["--input", str(inputs), "--profile", profile, *destination, "--outcomes", str(outcomes),
                           "--default_region", "US", "--summary", "false", *pipeline_flags,
                           "--dead_letters", str(work / f"dead-{uuid.uuid4().hex[:6]}")])
        assert status == 0
        self.outcomes = [json.loads(line) for name in sorted(os.listdir(outcomes))
                         for line in open(outcomes / name)]
        assert {o["status"] for o in self.outcomes} == {"ARCHIVED"}
        self.by_id = {o["message_id"]: o for o in self.outcomes}

    def bucket(self) -> Bucket:
        return Bucket(self.url, self.options)

    def keys(self) -> set[str]:
        return {key for key, _ in self.bucket().objects()}

    def key_of(self, outcome) -> str:
        return "sent_messages/" + outcome["url"].split("/sent_messages/", 1)[1]

    def keys_of(self, person: str) -> set[str]:
        """The keys of the messages the input sent to this email address."""
        return {self.key_of(self.by_id[message_id_of(r, self)]) for r in self.records if r["to"] == person}

    def person_flags(self, record) -> list[str]:
        channel = record["channel"].lower()
        if "email" in channel:
            return ["--email", record["to"]]
        if "push" in channel:
            return ["--push_token", record["to"]]
        return ["--phone", record["to"], "--default_region", "US"]


def sample_records(profile: str, count: int = COUNT) -> list[dict]:
    records = [json.loads(s.data) for s in samples(count, profile, seed=21, bad_ratio=0.0)]
    for index, record in enumerate(records):  # an id of our own on each, to follow it
        record.pop("message_id", None)
        record.pop("dispatch_id", None)
        record["message_id" if profile == "clevertap" else "dispatch_id"] = f"{profile[0]}-{index}"
    # one person with several messages on several channels: the erasure's subject
    person = {"clevertap": "Erin.Person@Example.org", "braze": "erin.person@example.org"}[profile]
    emails = [r for r in records if r["channel"].lower() == "email"][:3]
    for record in emails:
        record["to"] = person
    return records


DESTINATIONS = ("local", "s3", "azure", "gcs")


@pytest.fixture(scope="module")
def archives(tmp_path_factory, s3_server, azurite_server, gcs_server):
    """(destination kind, profile) -> Archive, each filled once for the module."""
    made = {}

    def get(kind: str, profile: str) -> Archive:
        if (kind, profile) not in made:
            work = tmp_path_factory.mktemp(f"{kind}-{profile}")
            name = f"retrieval-{profile}-{uuid.uuid4().hex[:8]}"
            if kind == "local":
                url, options = str(work / "archive"), {}
            elif kind == "s3":
                url, options = f"s3://{s3_server.create_bucket(name)}", s3_server.storage_options()
            elif kind == "azure":
                url, options = f"az://{azurite_server.create_container(name)}", azurite_server.storage_options()
            else:
                url, options = f"gs://{gcs_server.create_bucket(name)}", gcs_server.storage_options()
            made[kind, profile] = Archive(url, options, profile, work, sample_records(profile))
        return made[kind, profile]
    return get


def first_per_channel(archive: Archive) -> list[dict]:
    seen, chosen = set(), []
    for record in archive.records:
        channel = archive.by_id[message_id_of(record, archive)]["channel"]
        if channel not in seen:
            seen.add(channel)
            chosen.append(record)
    return chosen


def message_id_of(record: dict, archive: Archive) -> str:
    """The archived message id of an input record, read from the outcomes by the
    record's own id (CleverTap message_id, Braze dispatch_id; the sample always sets one)."""
    for name in ("message_id", "dispatch_id"):
        if record.get(name) is not None and str(record[name]) in archive.by_id:
            return str(record[name])
    raise AssertionError(f"no outcome for the record's id: {sorted(record)}")


# --- hostile and refused first -----------------------------------------------------------------

def test_a_plain_http_endpoint_off_loopback_is_refused_before_any_connection(loopback_only, environment):
    options = json.dumps({"key": "k", "secret": "s", "client_kwargs": {"endpoint_url": "http://203.0.113.7:9000"}})
    for command in (["find", "--email", "a@example.org"], ["verify"], ["index", "rebuild"], ["show", "m1"]):
        status, out, err = cli(*command, "--destination", "s3://bucket", "--storage_options", options)
        assert status == 2, (command, err)
        assert "plain http" in err.lower() or "http://" in err.lower() or "insecure" in err.lower(), err
        assert "203.0.113.7" in err and "secret" not in err.replace("--storage_options", "")


@pytest.mark.parametrize("argv, words", [
    (["find", "--email", "a@example.org"], "exactly one of --destination and --tenants"),
    (["find", "--destination", "{dest}"], "name a person"),
    (["find", "--destination", "{dest}", "--email", "Victim Name <victim@example.org>, b@example.org"],
     "is not an email address"),
    (["erase", "--destination", "{dest}"], "name the person"),
    (["export", "--destination", "{dest}", "--email", "a@example.org"], "--output"),
    (["find", "--destination", "{dest}", "--phone", "12"], "phone"),
    (["find", "--destination", "{dest}", "--since", "2024-13-01", "--email", "a@example.org"], "yyyy-mm-dd"),
    (["find", "--destination", "{dest}", "--email", "a@example.org", "--storage_options", "[1]"], "JSON object"),
    (["find", "--destination", "http://example.org/x", "--email", "a@example.org"], "http"),
])
def test_usage_errors_exit_2_with_one_line_that_never_echoes_a_recipient(tmp_path, argv, words):
    status, out, err = cli(*[a.replace("{dest}", str(tmp_path)) for a in argv])
    assert status == 2
    assert words in err and "Traceback" not in err and "victim" not in err.lower()
    assert len([line for line in err.splitlines() if line.strip()]) == 1


def test_rebuild_reports_objects_that_are_not_archive_json_and_indexes_the_rest(tmp_path):
    folder = tmp_path / "bucket"
    good = audit.parse_key(f"sent_messages/sms/{hashlib.md5(b'+14155550100').hexdigest()}/c/d1.json.gz")
    payload = {"version": 1, "to": "+14155550100", "body": "hi", "sent_at": 1719042154, "dispatch_id": "d1"}
    hostile = {
        f"sent_messages/sms/{'b' * 32}/c/d2.json.gz": b"not gzip at all",
        f"sent_messages/sms/{'c' * 32}/c/d3.json.gz": gzip.compress(b'{"a": NaN}'),
        f"sent_messages/sms/{'d' * 32}/c/d4.json.gz": gzip.compress(b"[" * 100_000),
        f"sent_messages/sms/{'e' * 32}/c/d5.json.gz": gzip.compress(b'{"a": 1, "a": 2}'),  # duplicate keys
        "sent_messages/sms/notadigest/c/d6.json.gz": gzip.compress(b"{}"),
    }
    for key, data in {good.key: gzip.compress(json.dumps(payload).encode()), **hostile}.items():
        (folder / os.path.dirname(key)).mkdir(parents=True, exist_ok=True)
        (folder / key).write_bytes(data)
    status, report = cli_json("index", "rebuild", "--destination", str(folder))
    assert status == 1
    (only,) = report["rebuilt"]
    assert (only["indexed"], only["not_archive"], only["other_keys"], only["unreadable"]) == (1, 4, 1, 0)
    status, found = cli_json("find", "--destination", str(folder), "--phone", "+1 415 555 0100")
    assert status == 0 and [r["message_id"] for r in found["rows"]] == ["d1"]


# --- find and show: every channel, both profiles, every store ------------------------------------

@pytest.mark.parametrize("kind", DESTINATIONS)
@pytest.mark.parametrize("profile", PROFILES)
def test_find_and_show_every_channel(archives, kind, profile):
    archive = archives(kind, profile)
    chosen = first_per_channel(archive)
    assert len(chosen) == 4  # every channel of the profile
    for record in chosen:
        message_id = message_id_of(record, archive)
        status, found = cli_json("find", *archive.flags, *archive.person_flags(record))
        assert status == 0, record["channel"]
        ids = [row["message_id"] for row in found["rows"]]
        assert message_id in ids
        row = found["rows"][ids.index(message_id)]
        assert row["sha256"] == archive.by_id[message_id]["sha256"] and row["profile"] == profile
        assert record["to"] not in json.dumps(found)  # never the plaintext recipient
        status, shown = cli_json("show", message_id, *archive.flags)
        raw = archive.bucket().read(row["key"])
        assert status == 0 and shown["sha256"] == hashlib.sha256(raw).hexdigest()
        assert shown["payload"] == audit.read_payload(raw, row["compression"])
    # by campaign, and by date range: the same rows the outcomes say
    record = chosen[0]
    campaign = str(record.get("campaign_id"))
    if record.get("campaign_id") is not None:
        status, found = cli_json("find", *archive.flags, "--campaign_id", campaign, "--limit", "1000")
        expected = {r["message_id"] if "message_id" in r else r["dispatch_id"] for r in archive.records
                    if str(r.get("campaign_id")) == campaign}
        assert status == 0 and {row["message_id"] for row in found["rows"]} == expected


def test_show_writes_the_original_bytes_and_pages_through_a_large_result(archives, tmp_path):
    archive = archives("local", "clevertap")
    message_id = archive.outcomes[0]["message_id"]
    target = tmp_path / "raw.lz4"
    status, _, _ = cli("show", message_id, *archive.flags, "--raw", str(target))
    assert status == 0
    assert hashlib.sha256(target.read_bytes()).hexdigest() == archive.by_id[message_id]["sha256"]
    status, _, err = cli("show", message_id, *archive.flags, "--raw", str(target))  # never overwrites
    assert status != 0
    pages = [cli_json("find", *archive.flags, "--since", "2000-01-01", "--limit", "50", "--page", str(page))[1]
             for page in (1, 2, 3)]
    assert pages[0]["count"] == len(archive.outcomes)
    listed = [row["message_id"] for page in pages for row in page["rows"]]
    assert sorted(listed) == sorted(archive.by_id) and len(set(listed)) == len(listed)
    status, out, _ = cli("find", *archive.flags, "--since", "2000-01-01")
    assert status == 0 and out.splitlines()[0].split()[:3] == ["sent_at", "(UTC)", "channel"]


# --- the index: written by the pipeline, rebuilt by reading -----------------------------------

@pytest.mark.parametrize("kind", ["local", "s3"])
@pytest.mark.parametrize("profile", PROFILES)
def test_rebuild_reproduces_the_index_the_pipeline_wrote(archives, kind, profile):
    archive = archives(kind, profile)
    bucket = archive.bucket()
    written = AuditIndex(bucket).find().drop_columns(["archived_at_ms"]).to_pylist()
    assert len(written) == len(archive.outcomes)
    report = rebuild(bucket, "default", prefix="rebuilt_index")
    assert report.indexed == len(archive.outcomes) and report.not_archive == report.unreadable == 0
    rebuilt = AuditIndex(bucket, "rebuilt_index").find().drop_columns(["archived_at_ms"]).to_pylist()
    assert sorted(rebuilt, key=lambda r: r["key"]) == sorted(written, key=lambda r: r["key"])


# --- verify ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["local", "s3", "azure", "gcs"])
def test_verify_catches_a_deleted_object_a_changed_byte_and_an_object_outside_the_index(archives, kind):
    archive = archives(kind, "braze")
    status, clean = cli_json("verify", *archive.flags)
    assert status == 0 and clean["checked"] == clean["ok"] == len(archive.outcomes)
    assert clean["manifests"] == 1 and clean["chain"] == [] and clean["not_in_manifest"] == []
    bucket = archive.bucket()
    deleted, changed, copied = (archive.key_of(o) for o in archive.outcomes[:3])
    data, deleted_data = bucket.read(changed), bucket.read(deleted)
    stray = f"sent_messages/sms/{'f' * 32}/unassociated/stray.json.gz"
    if bucket.local:
        os.makedirs(os.path.dirname(bucket.path(stray)), exist_ok=True)
    bucket.fs.pipe_file(bucket.path(stray), bucket.read(copied))
    bucket.fs.rm_file(bucket.path(deleted))
    bucket.fs.pipe_file(bucket.path(changed), data[:-1] + bytes([data[-1] ^ 1]))
    try:
        status, report = cli_json("verify", *archive.flags)
        assert status == 1
        assert report["missing"] == [deleted] and report["changed"] == [changed]
        assert report["not_indexed"] == [stray] and report["unreadable"] == []
        assert report["not_in_manifest"] == [stray] and report["chain"] == [] and report["manifests"] == 1
        assert report["counts"] == {"missing": 1, "changed": 1, "unreadable": 0, "not_indexed": 1,
                                    "not_in_manifest": 1, "chain": 0}
        assert report["ok"] == len(archive.outcomes) - 2
        status, sampled = cli_json("verify", *archive.flags, "--sample", "5")
        assert sampled["checked"] == 5
        # the manifests: one altered byte, then the whole chain removed
        (manifest,) = [key for key, _ in bucket.objects("archive_manifests")]
        original = bucket.read(manifest)
        bucket.fs.pipe_file(bucket.path(manifest), original.replace(b'"sha256":"', b'"sha256":"0', 1))
        status, report = cli_json("verify", *archive.flags)
        assert status == 1 and len(report["chain"]) == 1 and "does not hash" in report["chain"][0]
        # nothing is vouched for now: every object stored (all but the deleted one, and the stray)
        assert len(report["not_in_manifest"]) == len(archive.outcomes)
        bucket.fs.rm_file(bucket.path(manifest))
        status, report = cli_json("verify", *archive.flags)
        assert status == 1 and report["chain"] == ["tenant default: no manifests, though the pipeline archived here"]
        bucket.fs.pipe_file(bucket.path(manifest), original)
    finally:  # put the module's archive back as it was
        bucket.fs.rm_file(bucket.path(stray))
        bucket.fs.pipe_file(bucket.path(changed), data)
        bucket.fs.pipe_file(bucket.path(deleted), deleted_data)


# --- export ---------------------------------------------------------------------------------------

EMLCHECK = os.path.join(ROOT, "tests", "emlcheck")


@pytest.fixture(scope="module")
def go_eml_reader(tmp_path_factory):
    """tests/emlcheck built with Go: a second reader of .eml files, sharing nothing with Python's."""
    binary = str(tmp_path_factory.mktemp("emlcheck") / "emlcheck")
    subprocess.run(["go", "build", "-o", binary, "."], cwd=EMLCHECK, check=True, capture_output=True,
                   env={**os.environ, "GOFLAGS": "-mod=mod", "CGO_ENABLED": "0"}, timeout=300)
    return binary


@pytest.mark.parametrize("kind", ["local", "s3"])
@pytest.mark.parametrize("profile", PROFILES)
def test_export_writes_each_message_as_json_and_each_email_as_an_eml_two_parsers_read(
        archives, kind, profile, tmp_path, go_eml_reader):
    archive = archives(kind, profile)
    person = [r for r in archive.records if r["channel"].lower() == "email"][0]["to"]
    output = tmp_path / "person.zip"
    status, summary = cli_json("export", *archive.flags, "--email", person, "--output", str(output))
    assert status == 0 and summary["messages"] == 3 and summary["problems"] == 0
    status, _, err = cli("export", *archive.flags, "--email", person, "--output", str(output))
    assert status == 2 and "exists" in err  # never overwritten
    folder = tmp_path / "unzipped"
    with zipfile.ZipFile(output) as zipped:
        zipped.extractall(folder)
        names = zipped.namelist()
    manifest = json.loads((folder / "manifest.json").read_text())
    assert len(manifest["messages"]) == 3 and {m["status"] for m in manifest["messages"]} == {"ok"}
    emls = sorted(str(folder / n) for n in names if n.endswith(".eml"))
    assert len(emls) == 3 and len([n for n in names if n.endswith(".json")]) == 4  # 3 + the manifest
    go = [json.loads(line) for line in subprocess.run([go_eml_reader, *emls], check=True, capture_output=True,
                                                       text=True, timeout=60).stdout.splitlines()]
    for path, theirs in zip(emls, go):
        payload = json.loads(open(path[:-4] + ".json").read())
        ours = email.message_from_bytes(open(path, "rb").read(), policy=email.policy.default)
        assert not ours.defects
        assert ours["Subject"] == theirs["subject"] == payload["subject"]
        assert theirs["from"] == payload["from_address"]
        assert [address.lower() for address in theirs["to"]] == [person.lower()]
        bodies = {p["content_type"]: p["body"].replace("\r\n", "\n") for p in theirs["parts"]}
        ours_bodies = {p.get_content_type(): p.get_content().replace("\r\n", "\n") for p in ours.walk()
                       if not p.is_multipart()}
        assert bodies == ours_bodies
        assert bodies["text/html"].rstrip("\n") == payload["html_body"].replace("\r\n", "\n")
        if payload.get("plaintext_body"):
            assert bodies["text/plain"].rstrip("\n") == payload["plaintext_body"].replace("\r\n", "\n")
        millis = payload["sent_at"] * (1 if profile == "clevertap" else 1000)
        assert theirs["date"] == _iso(millis // 1000)


def _iso(seconds: int) -> str:
    import datetime
    return datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- erase ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", DESTINATIONS)
def test_erase_removes_exactly_one_persons_objects_and_index_rows_and_nothing_else(
        tmp_path_factory, s3_server, azurite_server, gcs_server, kind):
    work = tmp_path_factory.mktemp(f"erase-{kind}")
    name = f"erase-{uuid.uuid4().hex[:8]}"
    url, options = {
        "local": lambda: (str(work / "archive"), {}),
        "s3": lambda: (f"s3://{s3_server.create_bucket(name)}", s3_server.storage_options()),
        "azure": lambda: (f"az://{azurite_server.create_container(name)}", azurite_server.storage_options()),
        "gcs": lambda: (f"gs://{gcs_server.create_bucket(name)}", gcs_server.storage_options()),
    }[kind]()
    archive = Archive(url, options, "braze", work, sample_records("braze", 60))
    person = "erin.person@example.org"
    theirs = archive.keys_of(person)
    assert len(theirs) == 3
    before = archive.keys()

    status, plan = cli_json("erase", *archive.flags, "--email", person)  # a dry run
    assert status == 0 and plan["dry_run"] and set(plan["keys"]) == theirs and plan["removed"] == 0
    assert archive.keys() == before

    status, done = cli_json("erase", *archive.flags, "--email", "ERIN.Person@example.org", "--yes")
    assert status == 0 and done["removed"] == 3 and done["locked"] == [] and done["index_rows_removed"] == 3
    after = archive.keys()
    assert after == before - theirs  # exactly theirs, nothing else
    status, found = cli_json("find", *archive.flags, "--email", person)
    assert status == 1 and found["count"] == 0
    status, clean = cli_json("verify", *archive.flags)  # the chain still holds, with three tombstones
    assert status == 0 and clean["checked"] == len(archive.outcomes) - 3 and clean["erased_entries"] == 3
    assert done["manifests_tombstoned"] == 1
    for key, _ in archive.bucket().objects("archive_manifests"):
        assert not any(k.encode() in archive.bucket().read(key) for k in theirs)
    (record_key,) = done["erasure_records"]
    record = archive.bucket().read(record_key).decode()
    assert json.loads(record)["objects_removed"] == 3
    assert person not in record.lower() and audit.person_digests(email=[person]).recipient_md5.isdisjoint(
        set(record.split('"')))


def test_erase_leaves_objects_under_legal_hold_or_retention_and_says_so(tmp_path, s3_server):
    bucket_name = s3_server.create_bucket(f"locked-{uuid.uuid4().hex[:8]}", object_lock=True)
    archive = Archive(f"s3://{bucket_name}", s3_server.storage_options(), "braze", tmp_path,
                      sample_records("braze", 40))
    person = "erin.person@example.org"
    status, held = cli_json("hold", *archive.flags, "--email", person)
    assert status == 0 and held["objects"] == 3
    before = archive.keys()
    status, done = cli_json("erase", *archive.flags, "--email", person, "--yes")
    assert status == 1 and done["removed"] == 0 and len(done["locked"]) == 3
    assert {item["lock"] for item in done["locked"]} == {"legal hold"}
    assert archive.keys() == before  # nothing removed, nothing hidden behind a delete marker
    status, _ = cli_json("release", *archive.flags, "--email", person)
    assert status == 0
    status, done = cli_json("erase", *archive.flags, "--email", person, "--yes")
    assert status == 0 and done["removed"] == 3
    client = s3_server.boto3_client()
    for item in archive.keys_of(person):
        versions = client.list_object_versions(Bucket=bucket_name, Prefix=item)
        assert not versions.get("Versions") and not versions.get("DeleteMarkers")  # every version gone


# --- reconcile ------------------------------------------------------------------------------------

def test_reconcile_finds_deliveries_whose_object_is_missing_changed_or_absent(archives, tmp_path):
    archive = archives("s3", "clevertap")
    bucket = archive.bucket()
    records = [{"message_id": o["message_id"], "tenant": "default", "channel": o["channel"],
                "archive_status": "ARCHIVED", "archive_url": o["url"], "archive_sha256": o["sha256"],
                "message": {"to": "never printed"}} for o in archive.outcomes]
    folder = tmp_path / "deliveries"
    folder.mkdir()
    (folder / "deliveries-run-00000-of-00001.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in records) + "\n{not json\n"
        + json.dumps({"message_id": "bypassed-1", "archive_status": "NONE"}) + "\n")
    status, report = cli_json("reconcile", *archive.flags, "--deliveries", str(folder))
    assert status == 1 and report["delivered"] == len(records) + 2 and report["ok"] == len(records)
    assert len(report["without_archive"]) == 2 and report["missing"] == report["changed"] == []
    deleted, changed = archive.key_of(archive.outcomes[0]), archive.key_of(archive.outcomes[1])
    data, deleted_data = bucket.read(changed), bucket.read(deleted)
    bucket.fs.rm_file(bucket.path(deleted))
    bucket.fs.pipe_file(bucket.path(changed), data + b"\0")
    try:
        status, report = cli_json("reconcile", *archive.flags, "--deliveries", str(folder / "*.jsonl"))
        assert status == 1 and report["missing"] == [deleted] and report["changed"] == [changed]
        assert report["ok"] == len(records) - 2
        status, out, _ = cli("reconcile", *archive.flags, "--deliveries", str(folder))
        assert "never printed" not in out
    finally:
        bucket.fs.pipe_file(bucket.path(changed), data)
        bucket.fs.pipe_file(bucket.path(deleted), deleted_data)
    status, _, err = cli("reconcile", *archive.flags, "--deliveries", str(tmp_path / "none-*.jsonl"))
    assert status == 2 and "no delivery files match" in err


def test_compact_merges_each_partitions_files_keeping_one_row_per_key(tmp_path, archives):
    source = archives("local", "braze")
    import shutil
    folder = tmp_path / "copy"
    shutil.copytree(source.url, folder)
    flags = ["--destination", str(folder)]
    status, _ = cli_json("index", "rebuild", *flags)  # a second set of files, the same keys
    assert status == 0
    bucket = Bucket(str(folder))
    before = AuditIndex(bucket).find().drop_columns(["archived_at_ms"]).to_pylist()
    files_before = len(AuditIndex(bucket).files())
    status, report = cli_json("index", "compact", *flags)
    (only,) = report["compacted"]
    assert status == 0 and only["rows"] == len(source.outcomes) and only["duplicates_dropped"] == len(source.outcomes)
    files = AuditIndex(bucket).files()
    assert len(files) < files_before and all(name.rsplit("/", 1)[1].startswith("compact-") for name in files)
    after = AuditIndex(bucket).find().drop_columns(["archived_at_ms"]).to_pylist()
    assert sorted(after, key=lambda r: r["key"]) == sorted(before, key=lambda r: r["key"])
    status, clean = cli_json("verify", *flags)
    assert status == 0 and clean["not_indexed"] == []
