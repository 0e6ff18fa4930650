"""The archiver's pure steps: prepare a request, reject bad input, turn a write into an outcome."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import re

import pytest

from archive.archiver import Archiver, ArchiverConfig, ArchiveRequest
from archive.encoding import get_codec
from archive.envelope import InvalidMessage
from archive.errors import ErrorClass
from archive.outcome import ARCHIVED, FAILED, INVALID, DeadLetter
from archive.store import ObjectMetadata, WriteResult

NOW = 1_725_435_360_123

CT_SMS = {"channel": "sms", "to": "+1 (555) 555-5555", "body": "Hi there!", "provider": "twilio",
          "sent_at": 1722443282680, "message_id": "m-1", "campaign_id": 1722529032, "campaign_name": "Flat Offer",
          "user_id": 45142169}
BZ_SMS = {"channel": "sms", "to": "+15555555555", "body": "Hi there!", "sent_at": 1722443282,
          "dispatch_id": "d-1", "campaign_id": "ee965cb2-8934-4b0a-acf1-91c899c2f915"}

CT_STEM = "sent_messages/Sms/202407/1722529032/b3e2048d6e5378173713705fde6a93da/m-1"
BZ_STEM = "sent_messages/sms/49b860993017bf3a154c92e9a75dbaa7/ee965cb2-8934-4b0a-acf1-91c899c2f915/d-1"
CT_PAYLOAD = {"version": 1, "to": "15555555555", "body": "Hi there!", "provider": "twilio", "sent_at": 1722443282680,
              "message_id": "m-1", "campaign_id": 1722529032, "campaign_name": "Flat Offer", "user_id": 45142169}
BZ_PAYLOAD = {"version": 1, "to": "+15555555555", "body": "Hi there!", "sent_at": 1722443282, "dispatch_id": "d-1",
              "campaign_id": "ee965cb2-8934-4b0a-acf1-91c899c2f915"}


def _raise_on_constant(name):
    raise ValueError(f"non-standard JSON constant {name}")


PREPARE = [
    # (config, record, key, payload, codec, content encoding)
    pytest.param(ArchiverConfig(), CT_SMS, CT_STEM + ".json.lz4", CT_PAYLOAD, "lz4", None, id="clevertap-default"),
    pytest.param(ArchiverConfig(profile="braze"), BZ_SMS, BZ_STEM + ".json.gz", BZ_PAYLOAD, "gzip", "gzip",
                 id="braze-default"),
    pytest.param(ArchiverConfig(compression="gzip"), CT_SMS, CT_STEM + ".json.gz", CT_PAYLOAD, "gzip", "gzip",
                 id="clevertap-gzip"),
    pytest.param(ArchiverConfig(compression="zstd"), CT_SMS, CT_STEM + ".json.zst", CT_PAYLOAD, "zstd", "zstd",
                 id="clevertap-zstd"),
    pytest.param(ArchiverConfig(compression="none"), CT_SMS, CT_STEM + ".json", CT_PAYLOAD, "none", None,
                 id="clevertap-none"),
    pytest.param(ArchiverConfig(profile="braze", compression="lz4"), BZ_SMS, BZ_STEM + ".json.lz4", BZ_PAYLOAD,
                 "lz4", None, id="braze-lz4"),
    pytest.param(ArchiverConfig(profile="braze", compression="zstd"), BZ_SMS, BZ_STEM + ".json.zst", BZ_PAYLOAD,
                 "zstd", "zstd", id="braze-zstd"),
    pytest.param(ArchiverConfig(profile="braze", compression="none"), BZ_SMS, BZ_STEM + ".json", BZ_PAYLOAD,
                 "none", None, id="braze-none"),
]


@pytest.mark.parametrize("config, record, key, payload, codec, content_encoding", PREPARE)
def test_prepare(config, record, key, payload, codec, content_encoding):
    request = Archiver(config).prepare(json.dumps(record).encode(), source="in.jsonl:3", received_millis=NOW)
    assert isinstance(request, ArchiveRequest)
    assert request.key == key
    assert request.message_id == key.rsplit("/", 1)[1].split(".json")[0]
    assert request.channel == "sms"
    assert request.tenant == "default"
    assert request.source == "in.jsonl:3"
    # Objects are described as the files they are; Content-Encoding only on request.
    assert request.metadata == ObjectMetadata(get_codec(codec).media_type, None,
                                              hashlib.sha256(request.data).hexdigest(), codec)
    document = get_codec(codec).decompress(request.data)
    assert json.loads(document) == payload
    assert list(json.loads(document)) == list(payload)


@pytest.mark.parametrize("raw", [
    pytest.param(json.dumps(CT_SMS).encode(), id="bytes"),
    pytest.param(json.dumps(CT_SMS), id="str"),
    pytest.param(CT_SMS, id="mapping"),
])
def test_prepare_accepts_every_input_form(raw):
    request = Archiver().prepare(raw, received_millis=NOW)
    assert request.key == CT_STEM + ".json.lz4"


def test_prepare_is_deterministic():
    archiver = Archiver(ArchiverConfig(profile="braze"))
    first = archiver.prepare(json.dumps(BZ_SMS).encode(), received_millis=NOW)
    second = Archiver(ArchiverConfig(profile="braze")).prepare(json.dumps(BZ_SMS).encode(), received_millis=NOW + 5)
    assert (first.key, first.data) == (second.key, second.data)


SEND_TIME = [
    # (profile, record changes, the source's stamp, archived sent_at, key's yyyymm)
    pytest.param("clevertap", {}, NOW, 1722443282680, "202407", id="ct-sent_at"),
    pytest.param("clevertap", {"sent_at": None}, NOW, NOW, "202409", id="ct-source-stamp"),
    pytest.param("clevertap", {"sent_at": None, "batch_date": "20240905"}, None, 1725494400000, "202409",
                 id="ct-batch-date"),
    pytest.param("braze", {"sent_at": None}, NOW, NOW // 1000, None, id="bz-source-stamp"),
    pytest.param("braze", {"sent_at": None, "batch_id": 20240905}, None, 1725494400, None, id="bz-batch-id"),
]


@pytest.mark.parametrize("profile, changes, received, sent_at, month", SEND_TIME)
def test_the_send_time_comes_from_the_record_or_its_source(profile, changes, received, sent_at, month):
    record = {**(CT_SMS if profile == "clevertap" else BZ_SMS), **changes}
    archiver = Archiver(ArchiverConfig(profile=profile))
    request = archiver.prepare(json.dumps(record).encode(), received_millis=received)
    assert json.loads(archiver.codec.decompress(request.data))["sent_at"] == sent_at
    if month:
        assert request.key.split("/")[2] == month


@pytest.mark.parametrize("profile", ["clevertap", "braze"])
def test_a_record_without_any_send_time_is_invalid(profile):
    record = {**(CT_SMS if profile == "clevertap" else BZ_SMS), "sent_at": None}
    with pytest.raises(InvalidMessage) as caught:
        Archiver(ArchiverConfig(profile=profile)).prepare(json.dumps(record).encode())
    assert caught.value.field == "sent_at" and "missing" in caught.value.reason


@pytest.mark.parametrize("changes", [
    pytest.param({"sent_at": None, "batch_date": "20240905"}, id="batch-date"),
    pytest.param({}, id="sent_at"),
])
def test_the_archive_clock_decides_no_archived_byte(monkeypatch, changes):
    raw = json.dumps({**CT_SMS, **changes}).encode()
    seen = []
    for clock in (1_000_000.0, 2_000_000_000.0):  # 1970 and 2033
        monkeypatch.setattr("time.time", lambda: clock)
        request = Archiver().prepare(raw)
        seen.append((request.key, request.data))
    assert seen[0] == seen[1]


@pytest.mark.parametrize("config, record, tenant", [
    pytest.param(ArchiverConfig(), CT_SMS, "default", id="default"),
    pytest.param(ArchiverConfig(default_tenant="acme"), CT_SMS, "acme", id="configured-default"),
    pytest.param(ArchiverConfig(default_tenant="acme"), {**CT_SMS, "tenant": "globex"}, "globex", id="from-record"),
])
def test_prepare_tenant(config, record, tenant):
    assert Archiver(config).prepare(record, received_millis=NOW).tenant == tenant


def test_prepare_uses_the_default_region():
    record = {**CT_SMS, "to": "(650) 253-0000"}
    request = Archiver(ArchiverConfig(default_region="US")).prepare(record, received_millis=NOW)
    assert request.key == "sent_messages/Sms/202407/1722529032/193dfb8c227d629ca452953c5db6fd48/m-1.json.lz4"


@pytest.mark.parametrize("config, raw, field", [
    pytest.param(ArchiverConfig(), {**CT_SMS, "tenant": "  "}, "tenant", id="blank-tenant"),
    pytest.param(ArchiverConfig(max_message_bytes=50), json.dumps(CT_SMS).encode(), None, id="too-big"),
    pytest.param(ArchiverConfig(), {**CT_SMS, "channel": "mms"}, "channel", id="channel-not-in-profile"),
    pytest.param(ArchiverConfig(), '{"channel":"sms","body":"\udcff"}', None, id="lone-surrogate"),
])
def test_prepare_rejects(config, raw, field):
    with pytest.raises(InvalidMessage) as caught:
        Archiver(config).prepare(raw, received_millis=NOW)
    assert caught.value.field == field


@pytest.mark.parametrize("config, raw", [
    pytest.param(ArchiverConfig(profile="braze"),
                 b'{"channel":"push","to":"tok","platform":"ios_push","dispatch_id":"d","payload":{"badge":NaN}}',
                 id="nan-in-push-payload"),
    pytest.param(ArchiverConfig(), b'{"channel":"email","to":"a@example.com","subject":"s","from_address":'
                 b'"f@example.com","campaign_id":1,"campaign_name":"c","headers":{"x":Infinity}}',
                 id="infinity-in-headers"),
])
def test_archived_bytes_are_strict_json(config, raw):
    # NaN and Infinity are not JSON (RFC 8259): either refuse them as bad input
    # or archive something every JSON reader can read back.
    archiver = Archiver(config)
    try:
        request = archiver.prepare(raw, received_millis=NOW)
    except InvalidMessage:
        return
    json.loads(archiver.codec.decompress(request.data), parse_constant=_raise_on_constant)


# --- rejected ----------------------------------------------------------------

REJECTED = [
    # (profile, raw, recipient values that must not appear in the outcome)
    pytest.param("clevertap", json.dumps({**CT_SMS, "to": "+1 555 CALL NOW 12"}).encode(),
                 ["+1 555 CALL NOW 12", "CALL NOW"], id="invalid-phone"),
    pytest.param("clevertap", json.dumps({**CT_SMS, "to": "15555555555", "campaign_id": "x"}).encode(),
                 ["15555555555", "5555555"], id="bad-campaign-with-phone"),
    pytest.param("braze", json.dumps({"channel": "email", "to": "jane.doe@example.com", "subject": "s",
                                      "from_address": "f@braze.com", "cc": ["boss@example.com"]}).encode(),
                 ["jane.doe@example.com", "boss@example.com", "jane.doe"], id="email-with-cc"),
    pytest.param("braze", json.dumps({"channel": "email", "to": "jane.doe@example"}).encode(),
                 ["jane.doe@example", "jane.doe"], id="invalid-email"),
    pytest.param("braze", json.dumps({"channel": "fax", "to": "+15555555555"}).encode(),
                 ["+15555555555", "5555555"], id="unknown-channel"),
    pytest.param("clevertap", b'{"channel":"sms","to":"+15555555555","body":"Hi', ["+15555555555", "5555555"],
                 id="malformed-json"),
    pytest.param("clevertap", b'{"channel":"sms","to":"+15555555555","body":"\xff"}', ["+15555555555", "5555555"],
                 id="invalid-utf8"),
    pytest.param("clevertap", json.dumps({"channel": "sms", "to": 15555555555}).encode(), ["15555555555", "5555555"],
                 id="phone-as-number"),
    pytest.param("braze", json.dumps({"channel": "whatsapp", "to": "+15555555555"}).encode(),
                 ["+15555555555", "5555555"], id="channel-not-archived"),
    # A producer that keys a map by recipient: the field's name is the recipient.
    pytest.param("braze", json.dumps({"channel": "sms", "+15555555555": {"body": "hi"}}).encode(),
                 ["+15555555555", "5555555"], id="recipient-as-field-name"),
    pytest.param("braze", json.dumps({"channel": "email", "jane.doe@example.com": "hi"}).encode(),
                 ["jane.doe@example.com", "jane.doe"], id="email-as-field-name"),
]


@pytest.mark.parametrize("profile, raw, recipients", REJECTED)
def test_rejected(profile, raw, recipients):
    archiver = Archiver(ArchiverConfig(profile=profile))
    with pytest.raises(InvalidMessage) as caught:
        archiver.prepare(raw, received_millis=NOW)
    outcome, dead = archiver.rejected(raw, caught.value, source="in.jsonl:7")

    assert outcome.status == INVALID
    assert outcome.profile == profile
    assert outcome.reason == caught.value.reason
    assert outcome.field == caught.value.field
    assert outcome.input_sha256 == hashlib.sha256(raw).hexdigest()
    assert outcome.input_bytes == len(raw)
    assert outcome.source == "in.jsonl:7"
    assert outcome.url is None and outcome.attempts is None and outcome.error is None
    text = outcome.to_json()
    for value in recipients:
        assert value not in text
    assert "5555555" not in text and "@example" not in text

    assert isinstance(dead, DeadLetter)
    assert dead.data == raw
    assert dead.input_sha256 == outcome.input_sha256
    assert (dead.reason, dead.field, dead.source) == (outcome.reason, outcome.field, "in.jsonl:7")


@pytest.mark.parametrize("raw", [
    pytest.param(b'{"channel":"sms","to":"\xff\xfe+15555555555"}', id="bytes"),
    pytest.param(b"\x00\x01\x02\xff", id="binary"),
    pytest.param('{"channel":"sms","to":"\udcff"}', id="surrogate-escaped-str"),
])
def test_rejected_invalid_utf8_keeps_the_exact_bytes(raw):
    archiver = Archiver()
    with pytest.raises(InvalidMessage) as caught:
        archiver.prepare(raw)
    outcome, dead = archiver.rejected(raw, caught.value)
    original = raw if isinstance(raw, bytes) else raw.encode("utf-8", "surrogateescape")
    assert dead.data == original
    letter = json.loads(dead.to_json())
    assert "input" not in letter
    assert base64.b64decode(letter["input_base64"]) == original
    assert letter["input_sha256"] == hashlib.sha256(original).hexdigest() == outcome.input_sha256


def test_rejected_dead_letter_json_keeps_text_input():
    raw = b'{"channel":"fax","body":"caf\xc3\xa9"}'
    archiver = Archiver()
    with pytest.raises(InvalidMessage) as caught:
        archiver.prepare(raw)
    _, dead = archiver.rejected(raw, caught.value, source="s")
    letter = json.loads(dead.to_json())
    assert letter == {"status": "INVALID", "input_sha256": hashlib.sha256(raw).hexdigest(), "reason": caught.value.reason,
                      "field": "channel", "source": "s", "input": raw.decode("utf-8")}


@pytest.mark.parametrize("raw, message_id, tenant, channel", [
    pytest.param({"channel": "Push", "message_id": "m-9", "tenant": "acme", "bogus": 1}, "m-9", "acme", "push",
                 id="all"),
    pytest.param({"channel": "android_push", "dispatch_id": "d-9", "bogus": 1}, "d-9", None, "push",
                 id="dispatch_id-and-alias"),
    pytest.param({"channel": "E-mail", "message_id": "m-1", "dispatch_id": "d-1", "bogus": 1}, "m-1", None,
                 "email", id="message_id-first"),
    pytest.param({"channel": "sms", "message_id": 77, "bogus": 1}, "77", None, "sms", id="int-id"),
    pytest.param({"channel": "fax", "message_id": "m-9"}, "m-9", None, None, id="unknown-channel-dropped"),
    pytest.param({"channel": "+15555555555"}, None, None, None, id="recipient-as-channel-dropped"),
    pytest.param({"channel": "sms", "message_id": True, "bogus": 1}, None, None, "sms", id="boolean-id-ignored"),
    pytest.param({"channel": "sms", "message_id": "a\nb", "bogus": 1}, None, None, "sms",
                 id="unprintable-id-ignored"),
    pytest.param({"channel": "sms", "message_id": "x" * 201, "bogus": 1}, None, None, "sms", id="long-id-ignored"),
    pytest.param({"channel": "sms", "message_id": "", "dispatch_id": "d", "bogus": 1}, "d", None, "sms",
                 id="empty-id-skipped"),
    pytest.param(b"[]", None, None, None, id="not-an-object"),
    pytest.param(b"{", None, None, None, id="malformed"),
])
def test_rejected_best_effort_identity(raw, message_id, tenant, channel):
    archiver = Archiver()
    with pytest.raises(InvalidMessage) as caught:
        archiver.prepare(raw)
    outcome, _ = archiver.rejected(raw, caught.value)
    assert (outcome.message_id, outcome.tenant, outcome.channel) == (message_id, tenant, channel)


def test_rejected_mapping_dead_letter_is_canonical_json():
    record = {"to": "x", "channel": "fax"}
    archiver = Archiver()
    with pytest.raises(InvalidMessage) as caught:
        archiver.prepare(record)
    _, dead = archiver.rejected(record, caught.value)
    assert dead.data == b'{"channel":"fax","to":"x"}'


# --- written -----------------------------------------------------------------

def _request(archiver: Archiver) -> ArchiveRequest:
    return archiver.prepare(json.dumps(CT_SMS).encode(), source="in.jsonl:1", received_millis=NOW)


def test_written_ok():
    archiver = Archiver()
    request = _request(archiver)
    url = "s3://bucket/" + request.key
    outcome = archiver.written(request, WriteResult(url, 2, 12.5))
    assert outcome.status == ARCHIVED
    assert (outcome.message_id, outcome.tenant, outcome.channel, outcome.profile) == \
        ("m-1", "default", "sms", "clevertap")
    assert outcome.url == url
    assert outcome.bytes == len(request.data)
    assert outcome.sha256 == hashlib.sha256(request.data).hexdigest()
    assert (outcome.attempts, outcome.latency_ms, outcome.source) == (2, 12.5, "in.jsonl:1")
    assert outcome.error is None and outcome.error_class is None and outcome.reason is None
    at = dt.datetime.fromisoformat(outcome.at.replace("Z", "+00:00"))
    assert outcome.at.endswith("Z") and abs(dt.datetime.now(dt.timezone.utc) - at) < dt.timedelta(minutes=1)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", outcome.at)  # UTC, to the millisecond
    assert json.loads(outcome.to_json())["status"] == "ARCHIVED"
    assert "5555555" not in outcome.to_json()


@pytest.mark.parametrize("error, error_class, expected_class, kept, secret", [
    pytest.param(PermissionError("AccessDenied: AccountKey=abc123 denied"), ErrorClass.AUTH, "auth",
                 "AccessDenied", "abc123", id="auth"),
    pytest.param(OSError("SlowDown https://b/k?X-Amz-Signature=cafef00d"), ErrorClass.THROTTLED, "throttled",
                 "SlowDown", "cafef00d", id="throttled"),
    pytest.param(RuntimeError("boom sig=s3cr3t"), None, "unknown", "boom", "s3cr3t", id="unclassified"),
])
def test_written_failed(error, error_class, expected_class, kept, secret):
    archiver = Archiver()
    request = _request(archiver)
    url = "s3://bucket/" + request.key
    outcome = archiver.written(request, WriteResult(url, 4, 99.0, error, error_class))
    assert outcome.status == FAILED
    assert outcome.error_class == expected_class
    assert outcome.error.startswith("failed to archive: " + type(error).__name__)
    assert kept in outcome.error and secret not in outcome.error
    assert (outcome.url, outcome.attempts, outcome.latency_ms) == (url, 4, 99.0)
    assert outcome.bytes is None and outcome.sha256 is None
    assert secret not in outcome.to_json()
    assert "bytes" not in outcome.to_dict()


# --- what the per-message objects and bytes are, however they are made ------------------

@pytest.mark.parametrize("cls", ["ArchiveRequest", "ObjectMetadata", "ArchiveEntry", "Envelope"])
def test_hand_written_inits_are_the_dataclass_ones(cls):
    """ArchiveRequest, ObjectMetadata, ArchiveEntry and Envelope write their own
    __init__ (one dict update, not one object.__setattr__ per field): the
    same parameters, defaults and fields as the generated one, still frozen."""
    import dataclasses
    import inspect

    from archive import archiver, envelope, store
    from archive.profiles import base

    cls = {"ArchiveRequest": archiver.ArchiveRequest, "ObjectMetadata": store.ObjectMetadata,
           "ArchiveEntry": base.ArchiveEntry, "Envelope": envelope.Envelope}[cls]
    fields = dataclasses.fields(cls)
    parameters = list(inspect.signature(cls).parameters.values())
    assert [p.name for p in parameters] == [f.name for f in fields]
    assert [p.default for p in parameters] == [
        inspect.Parameter.empty if f.default is dataclasses.MISSING else f.default for f in fields]
    values = {f.name: f"value-{index}" for index, f in enumerate(fields)}
    made = cls(**values)
    assert vars(made) == values and dataclasses.asdict(made) == values
    assert made == cls(**values) and hash(made) == hash(cls(**values))
    assert dataclasses.replace(made, **{fields[0].name: "other"}) == cls(**{**values, fields[0].name: "other"})
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(made, fields[0].name, "changed")


@pytest.mark.parametrize("value", [
    {"a": 1, "b": [1.5, None, True, False, "é\u2028\x00\"\\", {"x": -0.0, "y": 1e300, "z": 5e-324}]},
    {"big": 10 ** 40, "neg": -(2 ** 63), "text": "😀", "empty": {}, "list": []},
    {1: "int key", "1": "str key", None: "null key", False: "bool key", 2.5: "float key"},
    {"nested": [[[[{"deep": [1, 2, 3]}]]]]}, [], {}, "text", 7, None,
])
def test_payload_json_is_json_dumps(value):
    from archive.encoding import payload_json

    assert payload_json(value) == json.dumps(value, ensure_ascii=False, allow_nan=False,
                                             separators=(",", ":")).encode("utf-8")


@pytest.mark.parametrize("value, field", [
    ({"to": "a", "sent_at": float("nan")}, "sent_at"), ({"x": float("inf")}, "x"), ({"x": b"bytes"}, "x"),
    ({"x": "\ud800"}, "x"), ({"x": {1, 2}}, "x"), ({"x": object()}, "x"),
])
def test_payload_json_refuses_what_json_dumps_refuses(value, field):
    from archive.encoding import payload_json

    with pytest.raises(InvalidMessage) as caught:
        payload_json(value)
    assert caught.value.field == field


def test_payload_json_refuses_a_circular_value():
    from archive.encoding import payload_json

    loop: list = []
    loop.append(loop)
    with pytest.raises(InvalidMessage) as caught:
        payload_json({"to": "a", "payload": loop})
    assert caught.value.field == "payload"
