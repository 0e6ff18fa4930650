"""Retrieval over the three layouts of issue 13: email as .eml, key templates, batched objects.

Every archive here is written by the pipeline itself (pipeline.run with
--email_format, --key_template, --object_mode batched, or a tenant file that
sets them), on a local folder and on the moto S3 server; retrieval then finds,
shows, verifies, exports, erases, rebuilds, reconciles and serves it through
`message-archiver`, as tests/test_retrieval.py does for the seeds' per-message
layout. Hostile cases first, and only they build or alter archive bytes by
hand: a batched object cut inside a frame, with bytes appended, with a frame
replaced by another message's, an index whose sha256 for a frame is not the
frame's, templated keys with '..' or an extra segment, an .eml that is not one
of ours.
"""

from __future__ import annotations

import email
import email.policy
import hashlib
import json
import os
import shutil
import urllib.error
import urllib.parse
import urllib.request
import uuid
import zipfile

import lz4.frame
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from archive import audit, encoding, frames
from archive.keys import KeyTemplate
from pipeline import run
from retrieval import web
from retrieval.bucket import Bucket
from retrieval.index import AuditIndex, rebuild
from tests import test_retrieval as retrieval_tests
from tests.test_retrieval import cli, cli_json, message_id_of, sample_records
from tests.test_web import serving

TEMPLATE = "archive/{tenant}/{channel}/{yyyy}/{mm}/{dd}/{recipient_md5}/{message_id}"
LAYOUTS = ("eml", "template", "batched")
PERSON = {"clevertap": "Erin.Person@Example.org", "braze": "erin.person@example.org"}
DAY_MS = 1_719_792_000_000  # 2024-07-01T00:00:00Z: every batched message is sent that day


def layout_flags(layout: str) -> list[str]:
    """The pipeline's flags for a layout."""
    return {"eml": ["--email_format", "both"],
            "eml-only": ["--email_format", "eml"],
            "template": ["--key_template", TEMPLATE],
            "batched": ["--object_mode", "batched", "--batch_seconds", "86400", "--batch_shards", "2"],
            "message": []}[layout]


def layout_records(profile: str, layout: str, count: int) -> list[dict]:
    records = sample_records(profile, count)
    if layout == "batched":  # one day: a channel's messages share a few objects, many frames each
        for index, record in enumerate(records):
            record["sent_at"] = DAY_MS + index * 1000
            record.pop("batch_date", None)
            record.pop("batch_id", None)
    return records


class Archive(retrieval_tests.Archive):
    """One destination the pipeline filled in one layout, with the retrieval flags that read it."""

    def __init__(self, url: str, options: dict, profile: str, layout: str, work, records: list[dict],
                 extra: list[str] = ()):
        self.layout = layout
        super().__init__(url, options, profile, work, records, [*layout_flags(layout), *extra],
                         ["--key_template", TEMPLATE, "--profile", profile] if layout == "template" else [])

    def bucket(self) -> Bucket:
        layouts = (audit.Layout(KeyTemplate(TEMPLATE), self.profile),) if self.layout == "template" else ()
        return Bucket(self.url, self.options, layouts=layouts)

    def key_of(self, url: str) -> str:
        bucket = self.bucket()
        return url[len(bucket.fs.unstrip_protocol(bucket.root)) + 1:]

    def index(self) -> list[dict]:
        return AuditIndex(self.bucket()).find().to_pylist()

    def person_ids(self) -> set[str]:
        return {message_id_of(r, self) for r in self.records if r["to"] == PERSON[self.profile]}


def fill(kind: str, profile: str, layout: str, work, s3_server, count: int = 40, versioned: bool = False,
         object_lock: bool = False) -> Archive:
    if kind == "local":
        url, options = str(work / f"archive-{uuid.uuid4().hex[:6]}"), {}
    else:
        name = s3_server.create_bucket(f"layouts-{uuid.uuid4().hex[:10]}", object_lock=object_lock)
        if versioned:
            s3_server.boto3_client().put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
        url, options = f"s3://{name}", s3_server.storage_options()
    return Archive(url, options, profile, layout, work, layout_records(profile, layout, count))


@pytest.fixture(scope="module")
def archives(tmp_path_factory, s3_server):
    """(kind, profile, layout) -> Archive, each filled once for the module (never altered by a test)."""
    made = {}

    def get(kind: str, profile: str, layout: str) -> Archive:
        if (kind, profile, layout) not in made:
            work = tmp_path_factory.mktemp(f"{kind}-{profile}-{layout}")
            made[kind, profile, layout] = fill(kind, profile, layout, work, s3_server)
        return made[kind, profile, layout]
    return get


def copy_of(archive: Archive, tmp_path) -> Archive:
    """A local archive's copy, to damage."""
    copied = object.__new__(Archive)
    copied.__dict__.update(archive.__dict__)
    copied.url = str(tmp_path / f"copy-{uuid.uuid4().hex[:6]}")
    shutil.copytree(archive.url, copied.url)
    copied.flags = [copied.url if flag == archive.url else flag for flag in archive.flags]
    return copied


def batched_rows(archive: Archive) -> dict[str, list[dict]]:
    """The index rows of each batched object, in frame order."""
    found: dict[str, list[dict]] = {}
    for row in archive.index():
        found.setdefault(row["key"], []).append(row)
    return {key: sorted(rows, key=lambda r: r["byte_offset"]) for key, rows in found.items()}


def the_email_object(archive: Archive) -> tuple[str, list[dict]]:
    """The batched email object that holds the most frames (at least three)."""
    key, rows = max(((k, r) for k, r in batched_rows(archive).items() if "/email/" in k), key=lambda kr: len(kr[1]))
    assert len(rows) >= 3
    return key, rows


def counts(report: dict) -> dict:
    return {name: n for name, n in report["counts"].items() if n}


# --- hostile first: batched objects ---------------------------------------------------------------

def test_a_batched_object_cut_inside_a_frame_is_caught_by_verify_show_and_rebuild(archives, tmp_path):
    archive = copy_of(archives("local", "clevertap", "batched"), tmp_path)
    key, rows = the_email_object(archive)
    bucket = archive.bucket()
    data = bucket.read(key)
    cut = rows[1]["byte_offset"] + 7  # inside the second frame
    with open(bucket.path(key), "wb") as handle:
        handle.write(data[:cut])
    status, report = cli_json("verify", *archive.flags)
    assert status == 1
    refs = [audit.row_ref(key, r["byte_offset"]) for r in rows]
    assert refs[0] not in report["changed"] and refs[1] in report["changed"]
    assert set(refs[1:]) <= set(report["changed"])  # the rest of the object is gone with it
    assert report["ok"] == len(archive.outcomes) - (len(rows) - 1)
    # the message cut in two is not shown as if it were whole; its neighbour before the cut still is
    status, _, err = cli("show", rows[1]["message_id"], *archive.flags)
    assert status == 1 and "not one whole frame" in err
    status, shown = cli_json("show", rows[0]["message_id"], *archive.flags)
    assert status == 0 and shown["byte_offset"] == 0 and shown["sha256"] == rows[0]["sha256"]
    # a rebuild indexes the sound frame, and counts the rest as not archive JSON
    report = rebuild(bucket, "default", prefix="rebuilt")
    assert report.not_archive == 1 and report.indexed == len(archive.outcomes) - (len(rows) - 1)
    rebuilt = [r for r in AuditIndex(bucket, "rebuilt").find().to_pylist() if r["key"] == key]
    assert [r["byte_offset"] for r in rebuilt] == [0]


def test_bytes_appended_to_a_batched_object_are_reported_and_its_frames_still_verify(archives, tmp_path):
    archive = copy_of(archives("local", "braze", "batched"), tmp_path)
    key, rows = the_email_object(archive)
    other_key, other_rows = next((k, r) for k, r in batched_rows(archive).items() if k != key)
    bucket = archive.bucket()
    data = bucket.read(key)
    stranger = bucket.read(other_key)[other_rows[0]["byte_offset"]:other_rows[0]["byte_offset"] + other_rows[0]["bytes"]]
    with open(bucket.path(key), "ab") as handle:  # a whole frame of another object, then garbage
        handle.write(stranger + b"\x00garbage")
    status, report = cli_json("verify", *archive.flags)
    assert status == 1 and report["ok"] == report["checked"] == len(archive.outcomes)
    end = len(data)
    assert report["not_indexed"] == [f"{key}@{end}", f"{key}@{end + len(stranger)} (bytes that are no frame)"]
    assert report["not_in_manifest"] == [f"{key}@{end}"]
    assert counts(report) == {"not_indexed": 2, "not_in_manifest": 1}
    # a rebuild indexes what reads as an email of this object and counts the rest: the garbage,
    # and the stranger when it is another channel's message (an email object holds emails)
    report = rebuild(bucket, "default", prefix="rebuilt")
    email = "/email/" in other_key
    assert report.not_archive == (1 if email else 2) and report.indexed == len(archive.outcomes) + email


def test_a_frame_replaced_by_another_messages_frame_is_changed(archives, tmp_path):
    archive = copy_of(archives("local", "braze", "batched"), tmp_path)
    key, rows = the_email_object(archive)
    bucket = archive.bucket()
    data = bucket.read(key)
    # the same object's first frame written over its second (two sound frames, the wrong message)
    first, second = rows[0], rows[1]
    frame = data[first["byte_offset"]:first["byte_offset"] + first["bytes"]]
    altered = data[:second["byte_offset"]] + frame + data[second["byte_offset"] + second["bytes"]:]
    with open(bucket.path(key), "wb") as handle:
        handle.write(altered)
    status, report = cli_json("verify", *archive.flags)
    assert status == 1
    assert audit.row_ref(key, second["byte_offset"]) in report["changed"]
    assert audit.row_ref(key, first["byte_offset"]) not in report["changed"]
    # filtered verify reads the frame alone (a byte range) and says the same
    person_email = next(r["to"] for r in archive.records if message_id_of(r, archive) == second["message_id"])
    status, report = cli_json("verify", *archive.flags, "--email", person_email)
    assert status == 1 and audit.row_ref(key, second["byte_offset"]) in report["changed"]
    # show never passes the other message off as this one: its range now holds no whole frame (the
    # frames' lengths differ), or a whole frame of the other message, shown with its own id and sha256
    status, out, err = cli("show", second["message_id"], *archive.flags, "--json")
    if first["bytes"] != second["bytes"]:
        assert status == 1 and "not one whole frame" in err
    else:
        shown = json.loads(out)
        assert shown["payload"]["dispatch_id"] == first["message_id"] and shown["sha256"] != second["sha256"]


def test_an_index_whose_sha256_for_a_frame_is_not_the_frames_is_reported(archives, tmp_path):
    archive = copy_of(archives("local", "clevertap", "batched"), tmp_path)
    key, rows = the_email_object(archive)
    victim = rows[2]
    bucket = archive.bucket()
    index = AuditIndex(bucket)
    for file_key in index.files():
        table = pq.read_table(bucket.path(file_key))
        if victim["key"] in table.column("key").to_pylist():
            listed = table.to_pylist()
            for row in listed:
                if row["key"] == victim["key"] and row["byte_offset"] == victim["byte_offset"]:
                    row["sha256"] = "0" * 64
            pq.write_table(pa.Table.from_pylist(listed, schema=table.schema), bucket.path(file_key))
    status, report = cli_json("verify", *archive.flags)
    ref = audit.row_ref(key, victim["byte_offset"])
    assert status == 1 and report["changed"] == [ref]
    assert report["chain"] == [f"{ref}: the index and its manifest disagree on its sha256"]
    assert report["ok"] == len(archive.outcomes) - 1


# --- hostile: templated keys, and .eml objects ------------------------------------------------------

def test_templated_keys_with_dot_dot_or_an_extra_segment_are_no_archive_keys(archives, tmp_path, s3_server):
    archive = archives("s3", "braze", "template")
    key = archive.key_of(archive.outcomes[0]["url"])
    parts = key.split("/")
    hostile = ["/".join(parts[:3] + [".."] + parts[3:]),         # a '..' segment
               "/".join(parts[:-1] + ["extra"] + parts[-1:]),     # one segment more
               "/".join(parts[:4] + parts[5:])]                   # one fewer
    layouts = archive.bucket().layouts
    assert audit.parse_key(key, layouts) is not None
    assert all(audit.parse_key(h, layouts) is None for h in hostile)
    client = s3_server.boto3_client()
    name = archive.url[len("s3://"):]
    data = archive.bucket().read(key)
    for item in hostile:  # S3 keeps '..' as text: a key like any other
        client.put_object(Bucket=name, Key=item, Body=data)
    try:
        report = rebuild(archive.bucket(), "default", prefix=f"rebuilt-{uuid.uuid4().hex[:6]}")
        assert report.other_keys == 3 and report.indexed == len(archive.outcomes)
        status, clean = cli_json("verify", *archive.flags)  # not archive keys: neither checked nor indexed
        assert status == 0 and clean["checked"] == len(archive.outcomes)
        with serving(web.create_app([("default", archive.bucket())])) as url:
            for item in hostile:
                for path in ("/message", "/download", "/eml", "/message/body"):
                    with pytest.raises(urllib.error.HTTPError) as refused:
                        urllib.request.urlopen(f"{url}{path}?key={urllib.parse.quote(item)}", timeout=10)
                    assert refused.value.code == 404
            # the real key is served only with its template known
            assert urllib.request.urlopen(f"{url}/message?key={urllib.parse.quote(key)}", timeout=10).status == 200
        with serving(web.create_app([("default", Bucket(archive.url, archive.options))])) as url:
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(f"{url}/message?key={urllib.parse.quote(key)}", timeout=10)
            assert refused.value.code == 404
    finally:
        for item in hostile:
            client.delete_object(Bucket=name, Key=item)


def foreign_eml() -> bytes:
    return (b"From: someone@example.org\r\nTo: other@example.org\r\nSubject: not archived by us\r\n"
            b"Content-Type: text/html\r\n\r\n<script>alert(1)</script><p>hello</p>\r\n")


def test_an_eml_that_is_not_ours_is_never_shown_or_indexed_as_an_archived_message(archives, tmp_path):
    archive = copy_of(archives("local", "clevertap", "eml"), tmp_path)
    bucket = archive.bucket()
    eml_rows = [row for row in archive.index() if row["key"].endswith(".eml.lz4")]
    victim = eml_rows[0]
    with open(bucket.path(victim["key"]), "wb") as handle:  # ours, replaced by someone else's email
        handle.write(lz4.frame.compress(foreign_eml()))
    stray = victim["key"].rsplit("/", 1)[0] + "/stray-1.eml.lz4"  # a foreign one at a key of our layout
    with open(bucket.path(stray), "wb") as handle:
        handle.write(lz4.frame.compress(foreign_eml()))
    status, report = cli_json("verify", *archive.flags)
    assert status == 1 and report["changed"] == [victim["key"]] and report["not_indexed"] == [stray]
    status, _, err = cli("show", victim["message_id"], *archive.flags, "--format", "eml")
    assert status == 1 and "not an archived message" in err
    report = rebuild(bucket, "default", prefix="rebuilt")
    assert report.not_archive == 2 and report.indexed == len(archive.index()) - 1
    output = tmp_path / "export.zip"
    person = next(r["to"] for r in archive.records if message_id_of(r, archive) == victim["message_id"])
    status, summary = cli_json("export", *archive.flags, "--email", person, "--output", str(output))
    assert status == 1 and summary["problems"] >= 1
    with zipfile.ZipFile(output) as zipped:
        assert all(b"not archived by us" not in zipped.read(n) for n in zipped.namelist())
        manifest = json.loads(zipped.read("manifest.json"))
    assert {m["status"] for m in manifest["messages"] if m["key"] == victim["key"]} == {"unreadable"}
    with serving(web.create_app([("default", bucket)])) as url:
        query = urllib.parse.urlencode({"key": victim["key"]})
        page = urllib.request.urlopen(f"{url}/message?{query}", timeout=10).read().decode()
        assert "changed" in page and "<script>alert" not in page and "unreadable" in page
        for path in ("/message/body", "/eml"):
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(f"{url}{path}?{query}", timeout=10)
            assert refused.value.code == 404


def test_show_without_an_index_finds_and_refuses_a_foreign_eml_by_listing(tmp_path):
    folder = tmp_path / "bucket"
    key = f"sent_messages/Email/202407/17/{'a' * 32}/m-1.eml.lz4"
    os.makedirs(folder / os.path.dirname(key))
    (folder / key).write_bytes(lz4.frame.compress(foreign_eml()))
    status, _, err = cli("show", "m-1", "--destination", str(folder))
    assert status == 1 and "not an archived message" in err


@pytest.mark.parametrize("argv, words", [
    (["--key_template", TEMPLATE], "needs --profile"),
    (["--key_template", "archive/{recipient_md5}/{message_id}", "--profile", "braze"], "{channel}"),
    (["--key_template", "archive_index/{channel}/{recipient_md5}/{message_id}", "--profile", "braze"],
     "where the archive keeps its own files"),
])
def test_key_template_flags_are_checked(tmp_path, argv, words):
    status, _, err = cli("verify", "--destination", str(tmp_path), *argv)
    assert status == 2 and words in err and len(err.strip().splitlines()) == 1


def test_key_template_and_profile_do_not_go_with_a_tenant_file(tmp_path):
    tenants = tmp_path / "tenants.yaml"
    tenants.write_text(f"tenants:\n  acme:\n    destinations:\n      - url: {tmp_path / 'a'}\n")
    status, _, err = cli("verify", "--tenants", str(tenants), "--profile", "braze")
    assert status == 2 and "--tenants file gives" in err


def test_an_index_written_before_byte_offset_existed_still_reads(archives, tmp_path):
    archive = copy_of(archives("local", "braze", "template"), tmp_path)
    bucket = archive.bucket()
    for file_key in AuditIndex(bucket).files():
        table = pq.read_table(bucket.path(file_key))
        pq.write_table(table.drop_columns(["byte_offset"]), bucket.path(file_key))
    record = next(r for r in archive.records if r["to"] == PERSON["braze"])
    status, found = cli_json("find", *archive.flags, "--email", record["to"])
    assert status == 0 and found["count"] == 3 and all("byte_offset" not in row for row in found["rows"])
    status, report = cli_json("verify", *archive.flags)
    assert status == 0 and report["ok"] == len(archive.outcomes)
    status, _ = cli_json("index", "rebuild", *archive.flags)  # new files beside the old: both read, and merge
    assert status == 0
    status, compacted = cli_json("index", "compact", *archive.flags)
    (only,) = compacted["compacted"]
    assert status == 0 and only["rows"] == only["duplicates_dropped"] == len(archive.outcomes)
    assert all(row["byte_offset"] is None for row in archive.index()) and len(archive.index()) == len(
        archive.outcomes)


# --- find, show, verify, export: each layout, a folder and S3 -------------------------------------

@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("kind", ["local", "s3"])
def test_find_show_verify_and_export(archives, kind, layout, tmp_path):
    profile = "clevertap" if layout != "template" else "braze"
    archive = archives(kind, profile, layout)
    bucket = archive.bucket()
    person = PERSON[profile]
    status, found = cli_json("find", *archive.flags, "--email", person)
    rows = found["rows"]
    ids = archive.person_ids()
    assert status == 0 and {row["message_id"] for row in rows} == ids
    assert person.lower() not in json.dumps(found).lower()
    for row in rows:
        outcome = archive.by_id[row["message_id"]]
        if layout == "batched":
            assert archive.key_of(outcome["url"]) == row["key"] and row["key"].startswith("sent_batches/")
            assert (row["byte_offset"], row["bytes"], row["sha256"]) == (
                outcome["byte_offset"], outcome["bytes"], outcome["sha256"])
        elif layout == "eml":
            assert row["key"] in (archive.key_of(outcome["url"]), archive.key_of(outcome["eml_url"]))
        else:
            assert row["key"].startswith("archive/default/email/2") and row["sha256"] == outcome["sha256"]
    assert len(rows) == len(ids) * (2 if layout == "eml" else 1)

    message_id = sorted(ids)[0]
    status, shown = cli_json("show", message_id, *archive.flags)
    assert status == 0 and shown["format"] == "json"
    assert shown["payload"]["message_id" if profile == "clevertap" else "dispatch_id"] == message_id
    assert shown["payload"]["to"] == next(r["to"] for r in archive.records if message_id_of(r, archive) == message_id)
    raw = tmp_path / "raw"
    status, _, _ = cli("show", message_id, *archive.flags, "--raw", str(raw))
    row = next(r for r in rows if r["message_id"] == message_id and not r["key"].endswith((".eml.lz4", ".eml.gz")))
    assert status == 0 and hashlib.sha256(raw.read_bytes()).hexdigest() == row["sha256"]
    if layout == "batched":  # a frame alone: a whole lz4 frame of one JSON line, read with a byte range
        assert audit.read_line(frames.read_frame("lz4", raw.read_bytes())) == shown["payload"]
    if layout == "eml":
        status, out, _ = cli("show", message_id, *archive.flags, "--format", "eml")
        parsed = email.message_from_string(out, policy=email.policy.default)
        assert status == 0 and parsed["Subject"] == shown["payload"]["subject"]
        assert parsed["X-Archive-Profile"] == profile

    status, report = cli_json("verify", *archive.flags)
    assert status == 0 and report["checked"] == report["ok"] == len(archive.index()), counts(report)
    assert report["manifests"] >= 1 and report["chain"] == []
    status, sampled = cli_json("verify", *archive.flags, "--sample", "7")  # byte ranges, for a batched one
    assert status == 0 and sampled["checked"] == sampled["ok"] == 7

    output = tmp_path / "export.zip"
    status, summary = cli_json("export", *archive.flags, "--email", person, "--output", str(output))
    assert status == 0 and summary["problems"] == 0
    with zipfile.ZipFile(output) as zipped:
        names = zipped.namelist()
        manifest = json.loads(zipped.read("manifest.json"))
        emls = {n: zipped.read(n) for n in names if n.endswith(".eml")}
        jsons = {n: json.loads(zipped.read(n)) for n in names if n.endswith(".json") and n != "manifest.json"}
    assert len(emls) == len(jsons) == len(ids) and {m["status"] for m in manifest["messages"]} == {"ok"}
    for name, data in emls.items():
        parsed = email.message_from_bytes(data, policy=email.policy.default)
        assert not parsed.defects and parsed["To"].lower() == person.lower()
        payload = jsons[name[:-4] + ".json"]
        assert parsed["Subject"] == payload["subject"]
    if layout == "eml":  # the archived .eml, as it is: the X-Archive-Key names its JSON twin
        stored = {row["message_id"]: row for row in rows if row["key"].endswith(".eml.lz4")}
        for name, data in emls.items():
            message = next(m for m in stored if name.endswith(f"-{m}.eml"))
            assert data == encoding.get_codec("lz4").decompress(bucket.read(stored[message]["key"]))


def test_an_eml_only_archive_reads_back(archives, tmp_path, s3_server):
    archive = fill("local", "braze", "eml-only", tmp_path, s3_server)
    person = PERSON["braze"]
    status, found = cli_json("find", *archive.flags, "--email", person)
    assert status == 0 and found["count"] == 3 and all(r["key"].endswith(".eml.gz") for r in found["rows"])
    message_id = found["rows"][0]["message_id"]
    status, shown = cli_json("show", message_id, *archive.flags)  # no JSON here: the .eml is the message
    assert status == 0 and shown["format"] == "eml" and "X-Archive-Profile: braze" in shown["eml"]
    status, report = cli_json("verify", *archive.flags)
    assert status == 0 and report["ok"] == len(archive.outcomes)
    output = tmp_path / "export.zip"
    status, summary = cli_json("export", *archive.flags, "--email", person, "--output", str(output))
    with zipfile.ZipFile(output) as zipped:
        names = zipped.namelist()
    assert status == 0 and len([n for n in names if n.endswith(".eml")]) == 3
    assert [n for n in names if n.endswith(".json")] == ["manifest.json"]  # the .eml is the message


# --- the index rebuilt by reading the bucket: as the pipeline wrote it --------------------------------

def same_rows(written: list[dict], rebuilt: list[dict], ignore: tuple[str, ...] = ()) -> None:
    def keyed(rows):
        return {(r["key"], r["byte_offset"]): {k: v for k, v in r.items() if k not in ("archived_at_ms",) + ignore}
                for r in rows}
    assert keyed(rebuilt) == keyed(written)
    assert len(rebuilt) == len(written)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("profile", ["clevertap", "braze"])
@pytest.mark.parametrize("kind", ["local", "s3"])
def test_rebuild_reproduces_the_pipelines_index(archives, kind, profile, layout):
    archive = archives(kind, profile, layout)
    bucket = archive.bucket()
    written = archive.index()
    expected = len(archive.outcomes) + (sum(1 for o in archive.outcomes if o.get("eml_url")) if layout == "eml"
                                        else 0)
    assert len(written) == expected
    prefix = f"rebuilt-{uuid.uuid4().hex[:6]}"
    report = rebuild(bucket, "default", prefix=prefix)
    assert report.indexed == len(written) and report.not_archive == report.unreadable == report.other_keys == 0
    assert report.batched_objects == (len({r["key"] for r in written}) if layout == "batched" else 0)
    same_rows(written, AuditIndex(bucket, prefix).find().to_pylist())
    if layout == "batched":
        assert all(r["byte_offset"] is not None for r in written)
        assert len({r["key"] for r in written}) < len(written)  # objects of many frames


def test_rebuild_of_an_eml_only_archive_is_the_pipelines_index(tmp_path, s3_server):
    """An .eml's X-Archive-* headers hold sent_at and every id the index keeps (archive.eml),
    so a rebuild without the JSON beside it gives the pipeline's rows."""
    for profile in ("clevertap", "braze"):
        archive = fill("local", profile, "eml-only", tmp_path, s3_server, count=30)
        bucket = archive.bucket()
        report = rebuild(bucket, "default", prefix="rebuilt")
        assert report.indexed == len(archive.outcomes) and report.not_archive == 0
        same_rows(archive.index(), AuditIndex(bucket, "rebuilt").find().to_pylist())


# --- erase ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("kind", ["local", "s3"])
def test_erase_removes_one_persons_messages_in_every_layout(tmp_path, s3_server, kind, layout):
    profile = "braze" if layout != "eml" else "clevertap"
    archive = fill(kind, profile, layout, tmp_path, s3_server, versioned=kind == "s3")
    bucket = archive.bucket()
    person = PERSON[profile]
    theirs = archive.person_ids()
    before = archive.index()
    mine = [row for row in before if row["message_id"] in theirs]
    others = [row for row in before if row["message_id"] not in theirs]
    assert len(theirs) == 3 and len(mine) == 3 * (2 if layout == "eml" else 1)
    touched = {row["key"] for row in mine}

    status, plan = cli_json("erase", *archive.flags, "--email", person)  # a dry run
    assert status == 0 and plan["dry_run"] and plan["removed"] == 0
    assert sorted(plan["keys"]) == sorted(audit.row_ref(r["key"], r["byte_offset"]) for r in mine)
    assert archive.index() == before

    status, done = cli_json("erase", *archive.flags, "--email", person.upper(), "--yes")
    assert status == 0 and done["locked"] == [] and done["removed"] == len(mine)
    assert done["index_rows_removed"] == len(mine)
    status, found = cli_json("find", *archive.flags, "--email", person)
    assert status == 1 and found["count"] == 0
    after = archive.index()
    assert sorted(r["message_id"] for r in after) == sorted(r["message_id"] for r in others)
    status, clean = cli_json("verify", *archive.flags)  # every other message intact, the chain whole
    assert status == 0, counts(clean)
    assert clean["checked"] == clean["ok"] == len(others) and clean["erased_entries"] == len(mine)
    for row in after:  # each other message still shows, from its (possibly moved) frame
        if row["key"] in touched:
            status, shown = cli_json("show", row["message_id"], *archive.flags)
            assert status == 0 and shown["sha256"] == row["sha256"]
    # nothing of theirs is left in any stored byte, any version, any manifest, or the erasure record
    stored = {key: bucket.read(key) for key, _ in bucket.archive_objects()}
    if layout == "batched":
        assert done["frames_removed"] == 3 and done["batched_objects_rewritten"] >= 1
        rewritten = [key for key in touched if key in stored]
        for key in rewritten:
            lines = [audit.read_line(line) for _, line in frames.lines("gzip", stored[key])]
            assert all(line["to"].lower() != person for line in lines)
            moved = {r["byte_offset"] for r in after if r["key"] == key}
            assert moved == {span.offset for span in frames.spans("gzip", stored[key])}
    else:
        assert touched.isdisjoint(stored)
    plain = person.lower().encode()
    assert all(plain not in encoding.get_codec(r["compression"]).decompress(stored[r["key"]]).lower()
               for r in after if r["byte_offset"] is None)
    digests = audit.person_digests(email=[person]).recipient_md5
    for key, _ in bucket.objects("archive_manifests"):
        text = bucket.read(key).decode()
        assert not any(r["key"] in text for r in mine if r["byte_offset"] is None)
        assert not any(d in text for d in digests)
    (record_key,) = done["erasure_records"]
    record = bucket.read(record_key).decode()
    assert person not in record.lower() and not any(d in record for d in digests)
    assert not any(r["key"] in record for r in mine)
    if kind == "s3":
        client = s3_server.boto3_client()
        name = archive.url[len("s3://"):]
        for key in touched:
            versions = client.list_object_versions(Bucket=name, Prefix=key)
            kept = [v for v in versions.get("Versions", []) if v["Key"] == key]
            assert len(kept) == (1 if key in stored else 0) and not versions.get("DeleteMarkers")
            if kept:  # the one version left is the rewritten object
                assert kept[0]["IsLatest"]
    # a rebuild over what is left agrees with the index the erasure rewrote
    prefix = f"rebuilt-{uuid.uuid4().hex[:6]}"
    rebuild(bucket, "default", prefix=prefix)
    same_rows(after, AuditIndex(bucket, prefix).find().to_pylist())


def test_a_batched_object_left_without_frames_is_erased_whole(tmp_path):
    records = layout_records("clevertap", "batched", 30)
    person = PERSON["clevertap"]
    for day, record in enumerate(r for r in records if r["to"] == person):  # each alone in a day's object
        record["sent_at"] = DAY_MS + (day + 2) * 86_400_000
    archive = Archive(str(tmp_path / "archive"), {}, "clevertap", "batched", tmp_path, records)
    theirs = {archive.key_of(archive.by_id[m]["url"]) for m in archive.person_ids()}
    assert len(theirs) == 3 and all(len(batched_rows(archive)[key]) == 1 for key in theirs)
    others = [row for row in archive.index() if row["key"] not in theirs]
    status, done = cli_json("erase", *archive.flags, "--email", person, "--yes")
    assert status == 0 and done["frames_removed"] == 3 and done["batched_objects_rewritten"] == 0
    stored = {key for key, _ in archive.bucket().archive_objects()}
    assert theirs.isdisjoint(stored) and archive.index() == others
    status, clean = cli_json("verify", *archive.flags)
    assert status == 0 and clean["ok"] == len(others) and clean["erased_entries"] == 3


def test_erase_leaves_a_batched_object_under_legal_hold_whole(tmp_path, s3_server):
    archive = fill("s3", "clevertap", "batched", tmp_path, s3_server, count=30, object_lock=True)
    person = PERSON["clevertap"]
    before = {key: archive.bucket().read(key) for key, _ in archive.bucket().archive_objects()}
    index_before = archive.index()
    status, held = cli_json("hold", *archive.flags, "--email", person)
    assert status == 0 and held["objects"] == 3
    status, done = cli_json("erase", *archive.flags, "--email", person, "--yes")
    assert status == 1 and done["removed"] == 0 and len(done["locked"]) == 3
    assert {item["lock"] for item in done["locked"]} == {"legal hold"}
    assert {key: archive.bucket().read(key) for key, _ in archive.bucket().archive_objects()} == before
    assert archive.index() == index_before
    status, _ = cli_json("release", *archive.flags, "--email", person)
    assert status == 0
    status, done = cli_json("erase", *archive.flags, "--email", person, "--yes")
    assert status == 0 and done["frames_removed"] == 3, done
    status, clean = cli_json("verify", *archive.flags)
    assert status == 0 and clean["ok"] == len(archive.outcomes) - 3


# --- reconcile -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["local", "s3"])
def test_reconcile_checks_the_frame_each_delivery_names(archives, tmp_path, kind):
    archive = archives(kind, "braze", "batched")
    records = []
    for number, outcome in enumerate(archive.outcomes):
        record = {"message_id": outcome["message_id"], "tenant": "default", "archive_status": "ARCHIVED",
                  "archive_url": outcome["url"], "archive_sha256": outcome["sha256"],
                  "message": {"to": "never printed"}}
        if number % 2:  # the outcome's byte range; the others are found through the index
            record.update(archive_byte_offset=outcome["byte_offset"], archive_bytes=outcome["bytes"])
        records.append(record)
    folder = tmp_path / "deliveries"
    folder.mkdir()
    (folder / "deliveries-1.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    status, report = cli_json("reconcile", *archive.flags, "--deliveries", str(folder))
    assert status == 0 and report["ok"] == report["delivered"] == len(records), counts(report)
    # one frame altered in place (same length), one object deleted
    key, rows = the_email_object(archive)
    bucket = archive.bucket()
    data = bucket.read(key)
    victim = rows[1]
    position = victim["byte_offset"] + victim["bytes"] // 2
    altered = data[:position] + bytes([data[position] ^ 1]) + data[position + 1:]
    gone_key, gone_rows = next((k, r) for k, r in batched_rows(archive).items() if k != key)
    gone = bucket.read(gone_key)
    bucket.fs.pipe_file(bucket.path(key), altered)
    bucket.fs.rm_file(bucket.path(gone_key))
    try:
        status, report = cli_json("reconcile", *archive.flags, "--deliveries", str(folder))
        assert status == 1 and report["changed"] == [audit.row_ref(key, victim["byte_offset"])]
        assert sorted(report["missing"]) == sorted(audit.row_ref(gone_key, r["byte_offset"]) for r in gone_rows)
        assert report["ok"] == len(records) - 1 - len(gone_rows)
        status, out, _ = cli("reconcile", *archive.flags, "--deliveries", str(folder))
        assert "never printed" not in out
    finally:
        bucket.fs.pipe_file(bucket.path(key), data)
        bucket.fs.pipe_file(bucket.path(gone_key), gone)


def test_reconcile_reads_templated_and_eml_urls_back(archives, tmp_path):
    records = []
    for layout in ("template", "eml"):
        archive = archives("local", "clevertap", layout)
        for outcome in archive.outcomes:
            for url in (outcome["url"], outcome.get("eml_url")):
                if url:
                    records.append({"message_id": outcome["message_id"], "archive_url": url,
                                    "archive_sha256": outcome["sha256"] if url == outcome["url"] else None})
        folder = tmp_path / layout
        folder.mkdir()
        (folder / "deliveries.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
        status, report = cli_json("reconcile", *archive.flags, "--deliveries", str(folder))
        assert status == 0 and report["ok"] == report["delivered"] == len(records), counts(report)
        records = []


# --- the web page ----------------------------------------------------------------------------------------

def get(url: str):
    """(status, headers (case-insensitive), body)."""
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, b""


@pytest.mark.parametrize("kind", ["local", "s3"])
def test_the_web_page_reads_frames_alone_and_emls_as_emails(archives, kind):
    batched, emls = archives(kind, "clevertap", "batched"), archives(kind, "clevertap", "eml")
    person = PERSON["clevertap"]
    for archive in (batched, emls):
        with serving(web.create_app([("default", archive.bucket())])) as url:
            status, _, page = get(f"{url}/?email={urllib.parse.quote(person)}")
            text = page.decode()
            assert status == 200 and text.count('class="ok"') == len(archive.person_ids()) * (
                2 if archive is emls else 1)
            for row in AuditIndex(archive.bucket()).find(audit.person_digests(email=[person])).to_pylist():
                query = {"key": row["key"]}
                if row["byte_offset"] is not None:
                    query["offset"] = str(row["byte_offset"])
                    assert f"{row['key']}@{row['byte_offset']}" in text
                    # without its offset, or with one that is no indexed frame, a batched key names nothing
                    for bad in ({"key": row["key"]}, {**query, "offset": str(row["byte_offset"] + 1)},
                                {**query, "offset": "-1"}, {**query, "offset": "1e3"}):
                        assert get(f"{url}/message?{urllib.parse.urlencode(bad)}")[0] == 404
                q = urllib.parse.urlencode(query)
                status, _, page = get(f"{url}/message?{q}")
                assert status == 200 and 'id="status">ok<' in page.decode()
                status, headers, body = get(f"{url}/message/body?{q}")
                assert status == 200 and "sandbox" in headers["Content-Security-Policy"]
                assert b"<" in body  # the email's HTML, served only into the sandboxed frame
                status, _, data = get(f"{url}/download?{q}")
                assert status == 200 and hashlib.sha256(data).hexdigest() == row["sha256"]
                status, headers, eml_bytes = get(f"{url}/eml?{q}")
                parsed = email.message_from_bytes(eml_bytes, policy=email.policy.default)
                assert status == 200 and parsed["To"].lower() == person.lower()
                if row["key"].endswith(".eml.lz4"):  # the archived .eml as it is, and shown as an email
                    assert eml_bytes == encoding.get_codec("lz4").decompress(archive.bucket().read(row["key"]))
                    page = get(f"{url}/message?{q}")[2].decode()
                    assert 'id="body"' in page and "Archived email (RFC 5322" in page
                    assert "<script" not in page.split("<pre", 1)[0].split("</header>", 1)[1]


# --- a tenant file: one tenant with its own key template, another batched, one destination --------------

def test_a_tenant_file_gives_each_tenants_layout_and_profile(tmp_path):
    destination = tmp_path / "shared"
    tenants = tmp_path / "tenants.yaml"
    tenants.write_text(f"""tenants:
  acme:
    profile: clevertap
    key_template: {TEMPLATE}
    email_format: both
    destinations: [{{url: "{destination}"}}]
  zeta:
    profile: braze
    object_mode: batched
    batch: {{seconds: 86400}}
    destinations: [{{url: "{destination}"}}]
""")
    records = []
    for tenant, profile in (("acme", "clevertap"), ("zeta", "braze")):
        for record in layout_records(profile, "batched", 24):
            records.append({**record, "tenant": tenant})
    inputs = tmp_path / "in.jsonl"
    inputs.write_text("".join(json.dumps(r) + "\n" for r in records))
    assert run.main(["--input", str(inputs), "--tenants", str(tenants), "--outcomes", str(tmp_path / "out"),
                     "--default_region", "US", "--summary", "false", "--dead_letters", str(tmp_path / "dead")]) == 0
    flags = ["--tenants", str(tenants)]
    for tenant, profile in (("acme", "clevertap"), ("zeta", "braze")):
        status, found = cli_json("find", *flags, "--tenant", tenant, "--email", PERSON[profile])
        assert status == 0 and {r["tenant"] for r in found["rows"]} == {tenant}
        assert found["count"] == 3 * (2 if tenant == "acme" else 1)
        assert all(r["key"].startswith("archive/acme/" if tenant == "acme" else "sent_batches/zeta/")
                   for r in found["rows"])
        status, shown = cli_json("show", found["rows"][0]["message_id"], *flags, "--tenant", tenant)
        assert status == 0 and shown["payload"]["to"] == PERSON[profile]
        status, report = cli_json("verify", *flags, "--tenant", tenant)
        assert status == 0 and report["not_indexed"] == [] and report["chain"] == [], counts(report)
    bucket = Bucket(str(destination))
    written = AuditIndex(bucket).find().to_pylist()
    assert {r["tenant"] for r in written} == {"acme", "zeta"}
    status, rebuilt = cli_json("index", "rebuild", *flags)  # each tenant's own objects, under its own name
    assert status == 0 and sum(r["indexed"] for r in rebuilt["rebuilt"]) == len(written)
    assert all(r["other_keys"] == r["not_archive"] == 0 for r in rebuilt["rebuilt"])
    template = audit.Layout(KeyTemplate(TEMPLATE), "clevertap")
    for tenant, layouts in (("acme", (template,)), ("zeta", ())):
        prefix = f"rebuilt-{tenant}"
        rebuild(Bucket(str(destination), layouts=(template,), profiles={"acme": "clevertap", "zeta": "braze"}),
                tenant, prefix=prefix, layouts=layouts, foreign=(template,), batch_tenants=[tenant])
        same_rows([r for r in written if r["tenant"] == tenant], AuditIndex(bucket, prefix).find().to_pylist())
