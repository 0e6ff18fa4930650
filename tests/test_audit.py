"""archive.audit: keys read back, index rows, a person's digests; archive.eml on hostile payloads.

Tables of cases, hostile ones first. The round trips use the profiles themselves:
every key a profile builds must read back to its fields, and every recipient
a profile hashes must be found by the digests `person_digests` computes.
"""

import email
import email.policy
import hashlib
import json

import pytest

from archive import audit, encoding
from archive.archiver import Archiver, ArchiverConfig, ArchiveRequest
from archive.envelope import InvalidMessage
from archive.sample import samples
from archive.eml import eml

MD5 = "0123456789abcdef0123456789abcdef"


@pytest.mark.parametrize("key", [
    "",                                                        # nothing
    "archive_index/tenant=a/channel=sms/date=2024-06-01/part-1.parquet",
    "dead_letters/dead-letters-run-00000-of-00001.jsonl",
    f"sent_messages/Sms/202406/1/{MD5}/m1.txt",                  # not .json
    f"sent_messages/Sms/202406/1/{MD5}/m1.json.bz2",             # unknown codec
    f"sent_messages/Sms/202406/1/{MD5}/.json.lz4",               # no message id
    f"sent_messages/Sms/2024-6/1/{MD5}/m1.json.lz4",             # month not yyyymm
    f"sent_messages/Sms/202406/1/{MD5.upper()}/m1.json.lz4",     # digest not lower-case hex
    f"sent_messages/Sms/202406/1/{MD5[:-1]}/m1.json.lz4",        # digest too short
    f"sent_messages/Fax/202406/1/{MD5}/m1.json.lz4",             # no such folder
    f"sent_messages/sms/{MD5}/c/extra/m1.json.gz",               # a level too many for braze
    f"sent_messages/Sms/202406/1/{MD5}/m1.json.lz4/x",            # object below an object's name
    f"other/Sms/202406/1/{MD5}/m1.json.lz4",                     # outside sent_messages
    f"sent_messages/sms/{MD5}/c/m1.jsonx.gz",                     # .json must end the stem
    f"sent_messages/sms/{MD5}/../m1.json.gz",                     # a segment that climbs
    f"sent_messages/sms/{MD5}/./m1.json.gz",
    f"sent_messages/sms/{MD5}//m1.json.gz",                       # an empty segment
    f"sent_messages/Sms/202406/../{MD5}/m1.json.lz4",
])
def test_keys_that_are_not_archive_objects_read_back_as_none(key):
    assert audit.parse_key(key) is None


@pytest.mark.parametrize("key, expected", [
    (f"sent_messages/Sms/202406/1719042154/{MD5}/m-1.json.lz4",
     ("clevertap", "sms", MD5, "1719042154", "m-1", "lz4", "202406")),
    (f"sent_messages/WhatsApp/202412/7/{MD5}/abc.json.gz", ("clevertap", "whatsapp", MD5, "7", "abc", "gzip", "202412")),
    (f"sent_messages/Push/202401/7/{MD5}/p.json", ("clevertap", "push", MD5, "7", "p", "none", "202401")),
    (f"sent_messages/Email/202401/7/{MD5}/e.json.zst", ("clevertap", "email", MD5, "7", "e", "zstd", "202401")),
    (f"sent_messages/sms/{MD5}/unassociated/d1.json.gz", ("braze", "sms", MD5, "unassociated", "d1", "gzip", None)),
    (f"sent_messages/email/{MD5}/camp-1/d2.json.lz4", ("braze", "email", MD5, "camp-1", "d2", "lz4", None)),
    (f"sent_messages/push/{MD5}/step-9/d3.json.gz", ("braze", "push", MD5, "step-9", "d3", "gzip", None)),
])
def test_both_layouts_read_back(key, expected):
    parsed = audit.parse_key(key)
    assert (parsed.profile, parsed.channel, parsed.recipient_md5, parsed.group, parsed.message_id,
            parsed.compression, parsed.year_month) == expected
    assert parsed.key == key


def prepared(profile, count=400, compression=None):
    archiver = Archiver(ArchiverConfig(profile=profile, compression=compression, default_region="US"))
    for sample in samples(count, profile, seed=5, bad_ratio=0.0):
        request = archiver.prepare(sample.data)
        if isinstance(request, ArchiveRequest):
            yield json.loads(sample.data), request


@pytest.mark.parametrize("profile", ["clevertap", "braze"])
@pytest.mark.parametrize("compression", [None, "gzip", "zstd", "none"])
def test_every_key_a_profile_builds_reads_back_and_indexes_like_its_request(profile, compression):
    channels = set()
    for record, request in prepared(profile, 150, compression):
        parsed = audit.parse_key(request.key)
        assert parsed is not None, request.key
        assert parsed.message_id == request.message_id and parsed.profile == profile
        row = audit.index_row(parsed, request.data, "t1", 5, request.payload, request.metadata.sha256)
        again = audit.index_row(parsed, request.data, "t1", 5)  # as a rebuild reads it: from the bytes
        assert row == again
        assert row.channel == request.channel and row.sha256 == hashlib.sha256(request.data).hexdigest()
        assert row.bytes == len(request.data) and row.compression == (compression or parsed.compression)
        assert row.sent_at_ms is not None and row.date != audit.UNKNOWN_DATE
        # never a plaintext recipient in a row
        text = json.dumps(row.to_dict())
        assert record["to"] not in text if isinstance(record["to"], str) else True
        channels.add(row.channel)
    assert channels == set(Archiver(ArchiverConfig(profile=profile)).profile.channels)


@pytest.mark.parametrize("profile", ["clevertap", "braze"])
def test_the_person_a_message_went_to_is_found_by_the_digests_of_what_an_officer_types(profile):
    for record, request in prepared(profile):
        row = audit.index_row(audit.parse_key(request.key), request.data, "t", None, request.payload)
        to, channel = record["to"], request.channel
        if channel == "email":
            typed = audit.person_digests(email=[to.upper() if "<" not in to else to])
        elif channel == "push":
            typed = audit.person_digests(push_token=[to])
        else:
            typed = audit.person_digests(phone=[to], default_region="US")
        assert row.recipient_md5 in typed.recipient_md5 or row.push_token_md5 in typed.push_token_md5, record
        # someone else is not
        other = audit.person_digests(email=["somebody.else@example.org"], phone=["+14155550100"],
                                     push_token=["not-this-token"])
        assert row.recipient_md5 not in other.recipient_md5 and row.push_token_md5 not in other.push_token_md5


@pytest.mark.parametrize("kind, value", [
    ("email", "two@example.org, addresses@example.org"),
    ("email", "not an address"),
    ("email", "a@b.invalid"),
    ("email", "x\u200b@example.org"),           # an invisible character
    ("phone", "+1 555"),                       # too short to be valid
    ("phone", "\uff0b\uff11\uff14\uff11\uff15\uff15\uff15\uff10\uff11\uff10\uff10"),  # full-width digits
    ("push_token", "two tokens"),
    ("push_token", ""),
])
def test_a_search_term_the_profiles_would_refuse_is_a_usage_error_naming_the_kind_not_the_value(kind, value):
    with pytest.raises(InvalidMessage) as raised:
        audit.person_digests(**{kind: [value]})
    assert value.strip() not in str(raised.value) or not value.strip()


def test_an_empty_id_to_search_for_is_refused():
    with pytest.raises(InvalidMessage):
        audit.person_digests(user_id=[""])


@pytest.mark.parametrize("data, compression", [
    (b"", "lz4"), (b"not lz4", "lz4"), (b"\x1f\x8b broken", "gzip"),
    (encoding.get_codec("gzip").compress(b"[1, 2]"), "gzip"),          # JSON, not an object
    (encoding.get_codec("gzip").compress(b'{"a": NaN}'), "gzip"),      # not strict JSON
    (encoding.get_codec("none").compress(b"\xff\xfe"), "none"),        # not UTF-8
])
def test_bytes_that_are_not_an_archive_objects_json_are_invalid_not_a_crash(data, compression):
    with pytest.raises(InvalidMessage):
        audit.read_payload(data, compression)


def test_index_tables_sort_by_recipient_and_drop_the_partition_columns():
    rows = [audit.index_row(audit.parse_key(request.key), request.data, "t", 1, request.payload)
            for _, request in prepared("braze", 60)]
    table = audit.index_table(rows)
    assert table.column_names == audit.FILE_COLUMNS
    digests = table.column("recipient_md5").to_pylist()
    assert digests == sorted(digests)
    assert audit.index_file_key(("a/b=c%", "sms", "2024-06-01"), "part-x") == \
        "archive_index/tenant=a%2Fb%3Dc%25/channel=sms/date=2024-06-01/part-x.parquet"


# --- eml: hostile payloads first -------------------------------------------------------------

HOSTILE_EMAILS = [
    {"subject": "Hi\r\nBcc: everyone@example.org", "to": "a@example.org", "from_address": "s@example.org"},
    {"subject": "x", "to": "a@example.org\nX-Injected: yes", "from_address": "s@example.org"},
    {"subject": "\u202eevil\u0000", "to": "a@example.org", "from_address": "s@example.org",
     "headers": {"Bad Name": "v", "X-Ok": "line1\r\nX-Injected: 1", "Subject": "second subject",
                 "X-Archive-Key": "forged", "": "empty", "X-Num": 5}},
    {"subject": None, "to": None, "from_address": None},
    {"subject": "big", "to": "a@example.org", "from_address": "s@example.org", "html_body": "<p>" + "x" * 2_000_000},
    {"subject": "att", "to": "a@example.org", "from_address": "s@example.org",
     "attachments": [{"file_name": "a\r\nb.txt", "bytes": "aGVsbG8="}, {"file_name": None, "bytes": "***"},
                     "not an object", {"bytes": [104, 105]}]},
    {"subject": "t", "to": ["a@example.org", 5, None], "cc": "c@example.org", "bcc": ["b@example.org"],
     "from_address": "s@example.org", "from_name": "Name, With \"Quotes\"", "sent_at": 1e300},
]


@pytest.mark.parametrize("payload", HOSTILE_EMAILS)
@pytest.mark.parametrize("profile", ["clevertap", "braze"])
def test_an_eml_is_one_well_formed_message_whatever_the_payload_holds(payload, profile):
    data = eml({**payload, "message_id": "m/1 <x>", "dispatch_id": "d1"}, profile, "k", "s" * 64)
    message = email.message_from_bytes(data, policy=email.policy.default)
    assert not message.defects
    assert message.get_all("X-Injected") is None
    assert len(message.get_all("Subject") or []) == 1 and len(message.get_all("X-Archive-Key")) == 1
    assert message["X-Archive-Key"] == "k"
    assert all(b"\r" not in line.rstrip(b"\r\n") for line in data.split(b"\n"))
    if payload.get("attachments"):
        names = [part.get_filename() for part in message.iter_attachments()]
        assert names == ["a b.txt", "attachment-2", "attachment-4"]
        assert [part.get_content() for part in message.iter_attachments()] == [b"hello", b"***", b"hi"]


def test_an_eml_carries_each_body_as_its_own_alternative_in_amp_order():
    payload = {"to": "Ann <ann@example.org>", "from_address": "s@example.org", "from_name": "Shop",
               "subject": "Sale \u2013 50%", "plaintext_body": "plain \u00e9", "amp_body": "<html \u26a14email>amp</html>",
               "html_body": "<p>html</p>", "sent_at": 1719042154, "dispatch_id": "d-1",
               "headers": {"List-Unsubscribe": "<https://x.example/u>"}}
    message = email.message_from_bytes(eml(payload, "braze", "sent_messages/k", "ab" * 32),
                                       policy=email.policy.default)
    assert message.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in message.iter_parts()] == ["text/plain", "text/x-amp-html", "text/html"]
    # RFC 5322 lines end in CRLF, and so do the decoded bodies
    assert [p.get_content().replace("\r\n", "\n") for p in message.iter_parts()] == ["plain \u00e9\n", "<html \u26a14email>amp</html>\n",
                                                                "<p>html</p>\n"]
    assert message["Subject"] == "Sale \u2013 50%" and message["To"] == "Ann <ann@example.org>"
    assert message["Date"] == "Sat, 22 Jun 2024 07:42:34 +0000"
    assert message["Message-ID"] == "<d-1@braze.archive.invalid>"
    assert message["List-Unsubscribe"] == "<https://x.example/u>"


# --- the manifests' hash chain -----------------------------------------------------------------

def chain_of(count: int, tenant: str = "t1", entries_each: int = 3) -> list[tuple[str, bytes]]:
    made, previous = [], audit.GENESIS
    for sequence in range(count):
        entries = [(f"sent_messages/sms/{'a' * 32}/c/m{sequence}-{i}.json.gz", f"{sequence:02d}{i:062d}")
                   for i in range(entries_each)]
        data = audit.manifest(tenant, sequence, previous, entries, "2026-12-07T00:00:00Z", "run")
        previous = json.loads(data)["chain"]
        made.append((audit.manifest_key(tenant, sequence), data))
    return made


def _edit(data: bytes, change) -> bytes:
    body = json.loads(data)
    change(body)
    return json.dumps(body).encode()


@pytest.mark.parametrize("name, damage, words", [
    ("a manifest removed", lambda c: c[:2] + c[3:], "manifest 2 of tenant t1 is missing"),
    ("the first removed", lambda c: c[1:], "manifest 0 of tenant t1 is missing"),
    ("an entry's sha256 changed", lambda c: c[:1] + [(c[1][0], _edit(c[1][1], lambda b: b["entries"][0].update(
        sha256="f" * 64)))] + c[2:], "does not hash to its own chain value"),
    ("an entry dropped", lambda c: c[:1] + [(c[1][0], _edit(c[1][1], lambda b: b["entries"].pop()))] + c[2:],
     "does not hash to its own chain value"),
    ("a manifest rewritten whole, its chain recomputed", lambda c: c[:1] + [(c[1][0], audit.manifest(
        "t1", 1, json.loads(c[0][1])["chain"], [("k", "0" * 64)], "x", "forged"))] + c[2:],
     "does not follow the manifest before it"),
    ("a manifest of another tenant slipped in", lambda c: c[:1] + [(c[1][0], chain_of(2, "t2")[1][1])] + c[2:],
     "does not hash to its own chain value"),
    ("not JSON", lambda c: c[:1] + [(c[1][0], b"\xff{")] + c[2:], "does not hash to its own chain value"),
    ("NaN inside", lambda c: c[:1] + [(c[1][0], c[1][1].replace(b'"sequence":1', b'"sequence":NaN'))] + c[2:],
     "does not hash to its own chain value"),
    ("renamed to another sequence", lambda c: c[:1] + [(audit.manifest_key("t1", 7), c[1][1])] + c[2:],
     "does not hash to its own chain value"),
])
def test_a_broken_chain_is_found_and_said(name, damage, words):
    report = audit.check_chain("t1", damage(chain_of(4)))
    assert any(words in problem for problem in report.problems), (name, report.problems)


def test_an_intact_chain_verifies_and_gives_every_entry():
    report = audit.check_chain("t1", list(reversed(chain_of(4))))  # any order
    assert report.problems == [] and report.manifests == 4 and len(report.entries) == 12


def test_tombstones_keep_the_chain_verifiable_and_drop_the_key():
    chain = chain_of(3)
    erased = {json.loads(chain[1][1])["entries"][1]["key"]}
    chain[1] = (chain[1][0], audit.tombstoned(chain[1][1], erased, "archive_erasures/e1.json"))
    report = audit.check_chain("t1", chain)
    assert report.problems == [] and report.erased == 1 and not erased & set(report.entries)
    assert next(iter(erased)).encode() not in chain[1][1]
    # a tombstone cannot hide a changed entry hash
    forged = _edit(chain[1][1], lambda b: b["entries"][1].update(entry="0" * 64))
    assert audit.check_chain("t1", [chain[0], (chain[1][0], forged), chain[2]]).problems


@pytest.mark.parametrize("key, sequence", [
    ("archive_manifests/tenant=a/000000000012.json", 12), ("archive_manifests/tenant=a/12.json", None),
    ("archive_manifests/tenant=a/00000000001x.json", None), ("archive_manifests/tenant=a/000000000012.jsonx", None),
])
def test_manifest_sequence_numbers_read_back_only_from_their_own_names(key, sequence):
    assert audit.manifest_sequence(key) == sequence
