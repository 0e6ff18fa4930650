"""The input envelope: decoding, send time, year-month and derived ids."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from archive.envelope import (
    CHANNELS, ENVELOPE_FIELDS, Envelope, InvalidMessage, decode, derived_message_id, sent_at_millis, year_month,
)

NOW = 1_725_435_360_123  # 2024-09-04T07:36:00.123Z


def _millis(iso: str) -> int:
    return int(dt.datetime.fromisoformat(iso).timestamp() * 1000)


def _env(**fields) -> Envelope:
    return decode({"channel": "push", **fields})


# --- decode: valid records -------------------------------------------------

VALID = [
    pytest.param(b'{"channel":"sms","to":"15555555555","body":"Hi there!"}', "sms",
                 {"channel": "sms", "to": "15555555555", "body": "Hi there!"}, id="bytes"),
    pytest.param('{"channel":"email","to":"customer@example.com","subject":"20% off é"}', "email",
                 {"channel": "email", "to": "customer@example.com", "subject": "20% off é"}, id="str-non-ascii"),
    pytest.param({"channel": "whatsapp", "to": "15555555555", "campaign_id": 1722529032}, "whatsapp",
                 {"channel": "whatsapp", "to": "15555555555", "campaign_id": 1722529032}, id="mapping"),
    pytest.param(b'  {"channel":"push","user_id":45142169,"payload":{"a":[1,2]}}\n', "push",
                 {"channel": "push", "user_id": 45142169, "payload": {"a": [1, 2]}}, id="surrounding-whitespace"),
    pytest.param(b'{"channel":"mms","to":"+15555555555","media_urls":["https://x/a.png"],"version":1}', "mms",
                 {"channel": "mms", "to": "+15555555555", "media_urls": ["https://x/a.png"], "version": 1},
                 id="mms-with-version"),
    pytest.param(b'{"channel":"email","cc":"a@example.com","bcc":["b@example.com"],"headers":{},'
                 b'"attachments":[{"file_name":"a.txt","bytes":"aGk="}]}', "email",
                 {"channel": "email", "cc": "a@example.com", "bcc": ["b@example.com"], "headers": {},
                  "attachments": [{"file_name": "a.txt", "bytes": "aGk="}]}, id="address-lists-attachments"),
    pytest.param(b'{"channel":"push","to":null,"campaign_id":null}', "push",
                 {"channel": "push", "to": None, "campaign_id": None}, id="nulls-are-absent"),
    pytest.param(b'{"channel":"sms","sent_at":"2024-07-31T16:28:02Z","batch_date":20240731,"batch_id":"20240731"}',
                 "sms", {"channel": "sms", "sent_at": "2024-07-31T16:28:02Z", "batch_date": 20240731,
                         "batch_id": "20240731"}, id="times"),
]


@pytest.mark.parametrize("raw, channel, fields", VALID)
def test_decode_valid(raw, channel, fields):
    envelope = decode(raw)
    assert envelope.channel == channel
    assert envelope.channel in CHANNELS
    assert dict(envelope.fields) == fields


@pytest.mark.parametrize("raw", [
    pytest.param(b'{"channel":"sms", "to" : "1"}\n', id="bytes"),
    pytest.param('{"channel":"sms","body":"é"}', id="str"),
])
def test_decode_keeps_the_original_bytes(raw):
    expected = raw if isinstance(raw, bytes) else raw.encode("utf-8")
    assert decode(raw).original == expected


def test_decode_mapping_original_is_canonical_json():
    envelope = decode({"to": "1", "channel": "sms"})
    assert envelope.original == b'{"channel":"sms","to":"1"}'


def test_envelope_accessors():
    envelope = decode({"channel": "sms", "tenant": "acme", "body": "x"})
    assert envelope.tenant == "acme"
    assert envelope.has("body") and not envelope.has("to")
    assert envelope.get("body") == "x"
    assert envelope.get("to", "fallback") == "fallback"
    assert decode({"channel": "sms"}).tenant is None


@pytest.mark.parametrize("spelling, channel, platform_hint", [
    pytest.param("Push", "push", None, id="Push"),
    pytest.param("Sms", "sms", None, id="Sms"),
    pytest.param("WhatsApp", "whatsapp", None, id="WhatsApp"),
    pytest.param("Email", "email", None, id="Email"),
    pytest.param("E-mail", "email", None, id="E-mail"),
    pytest.param("email", "email", None, id="email"),
    pytest.param(" EMAIL ", "email", None, id="padded-upper"),
    pytest.param("MMS", "mms", None, id="MMS"),
    pytest.param("android_push", "push", "android", id="android_push"),
    pytest.param("ios_push", "push", "ios", id="ios_push"),
    pytest.param("kindle_push", "push", "kindle", id="kindle_push"),
    pytest.param("web_push", "push", "web", id="web_push"),
    pytest.param("whatsapp", "whatsapp", None, id="whatsapp"),
])
def test_channel_aliases(spelling, channel, platform_hint):
    envelope = decode(json.dumps({"channel": spelling}).encode())
    assert (envelope.channel, envelope.platform_hint) == (channel, platform_hint)
    assert envelope.get("channel") == spelling  # the record is kept as given


# --- decode: bad inputs ----------------------------------------------------

BIG = b'{"channel":"sms","body":"' + b"x" * 200 + b'"}'

BAD = [
    # (raw, reason substring, field, max_bytes)
    pytest.param(b'{"channel": "sms",', "malformed JSON", None, None, id="truncated-json"),
    pytest.param(b"{'channel': 'sms'}", "malformed JSON", None, None, id="single-quotes"),
    pytest.param(b"", "empty input: no JSON value", None, None, id="empty"),
    pytest.param(b"  \t\r", "blank line", None, None, id="blank"),
    pytest.param(b"\xef\xbb\xbf{}", "byte order mark", None, None, id="bom"),
    pytest.param(b'{"channel":"sms","to":"a","to":"b"}', "duplicate key 'to'", "to", None, id="duplicate-key"),
    pytest.param(b'{"channel":"sms","body":"\\ud800"}', "unpaired surrogate", "body", None, id="lone-surrogate-escape"),
    pytest.param(b'{"channel":"push","payload":{"x":1e400}}', "64-bit float", "payload", None, id="float-overflow"),
    pytest.param(b'{"channel":"push","payload":' + b"[" * 40 + b"]" * 40 + b"}", "deeper than 32 levels",
                 "payload", None, id="too-deep"),
    pytest.param(b'{"channel":"push","payload":' + b"[" * 5000 + b"]" * 5000 + b"}", "deeper than 32 levels",
                 None, None, id="too-deep-for-the-parser"),
    pytest.param(b'{"channel":"push","user_id":' + b"9" * 4301 + b"}", "more than 100 digits",
                 "user_id", None, id="int-over-4300-digits"),
    pytest.param(b'{"channel":"push","user_id":9223372036854775808}', "must fit a signed 64-bit integer",
                 "user_id", None, id="id-over-int64"),
    pytest.param(b'{"channel":"sms","body":"\xff\xfe"}', "not valid UTF-8", None, None, id="invalid-utf8"),
    pytest.param(None, "no value", None, None, id="none"),
    pytest.param('{"channel":"sms","body":"\udcff"}', "not valid UTF-8", None, None, id="lone-surrogate-str"),
    pytest.param(b'["channel","sms"]', "not an array", None, None, id="array"),
    pytest.param(b'"sms"', "not a string", None, None, id="string"),
    pytest.param(b"42", "not a number", None, None, id="number"),
    pytest.param(b"null", "not null", None, None, id="null"),
    pytest.param(b"true", "not a boolean", None, None, id="boolean"),
    pytest.param(b'{"to":"15555555555"}', "channel is missing", "channel", None, id="no-channel"),
    pytest.param(b'{"channel":null}', "channel must be a string", "channel", None, id="channel-null"),
    pytest.param(b'{"channel":5}', "channel must be a string, not a number", "channel", None, id="channel-number"),
    pytest.param(b'{"channel":"fax"}', "unknown channel", "channel", None, id="unknown-channel"),
    pytest.param(b'{"channel":"push_notification"}', "unknown channel", "channel", None, id="unknown-channel-2"),
    pytest.param(b'{"channel":"sms","recipient":"x"}', "unknown field(s) 1 unnamed", None, None,
                 id="unknown-field"),
    pytest.param(b'{"channel":"sms","To":"x"}', "unknown field(s) 'To' (did you mean 'to'?)", "To", None,
                 id="field-names-are-exact"),
    pytest.param(b'{"channel":"sms","campaignId":1,"x":1,"y":2}', "unknown field(s) 'campaignId' (did you mean "
                 "'campaign_id'?) and 2 unnamed", "campaignId", None, id="near-miss-named-others-not"),
    pytest.param(b'{"channel":"push","Test_Push_Token12345":{"badge":1}}', "unknown field(s) 1 unnamed", None,
                 None, id="push-token-as-field-name"),
    pytest.param(b'{"channel":"push","Test_Push_Token12345":1e400}', "a field holds a number beyond", None,
                 None, id="push-token-as-field-name-with-bad-value"),
    # several wrong fields, in any order: the first in the envelope's order is named
    pytest.param(b'{"channel":"push","version":"1","extras":[],"user_id":true,"to":5}',
                 "to must be a string, not a number", "to", None, id="several-wrong-names-to"),
    pytest.param(b'{"channel":"push","batch_id":"x","attachments":{},"media_urls":"a","headers":1}',
                 "headers must be an object, not a number", "headers", None, id="several-wrong-names-headers"),
    pytest.param(b'{"channel":"sms","to":15555555555}', "to must be a string, not a number", "to", None,
                 id="to-number"),
    pytest.param(b'{"channel":"sms","body":["a"]}', "body must be a string, not an array", "body", None,
                 id="body-array"),
    pytest.param(b'{"channel":"push","user_id":true}', "user_id must be a string or an integer, not a boolean",
                 "user_id", None, id="user_id-true"),
    pytest.param(b'{"channel":"push","campaign_id":false}', "campaign_id must be a string or an integer, "
                 "not a boolean", "campaign_id", None, id="campaign_id-false"),
    pytest.param(b'{"channel":"push","device_identity":1.5}', "device_identity must be a string or an integer",
                 "device_identity", None, id="device_identity-float"),
    pytest.param(b'{"channel":"push","journey_id":{}}', "journey_id must be a string or an integer, not an object",
                 "journey_id", None, id="journey_id-object"),
    pytest.param(b'{"channel":"push","payload":"{}"}', "payload must be an object, not a string", "payload",
                 None, id="payload-string"),
    pytest.param(b'{"channel":"email","headers":[]}', "headers must be an object", "headers", None,
                 id="headers-array"),
    pytest.param(b'{"channel":"mms","media_urls":"https://x"}', "media_urls must be an array of strings",
                 "media_urls", None, id="media_urls-string"),
    pytest.param(b'{"channel":"mms","media_urls":[1]}', "media_urls must be an array of strings",
                 "media_urls", None, id="media_urls-numbers"),
    pytest.param(b'{"channel":"email","cc":[1]}', "cc must be an array of strings", "cc", None, id="cc-numbers"),
    pytest.param(b'{"channel":"email","bcc":{}}', "bcc must be an array of strings or a string", "bcc", None,
                 id="bcc-object"),
    pytest.param(b'{"channel":"email","attachments":{}}', "attachments must be an array of objects",
                 "attachments", None, id="attachments-object"),
    pytest.param(b'{"channel":"email","attachments":["a"]}', "attachments must be an array of objects",
                 "attachments", None, id="attachments-strings"),
    pytest.param(b'{"channel":"email","attachments":[{"file_name":"a"}]}', "string 'file_name' and string 'bytes'",
                 "attachments", None, id="attachment-without-bytes"),
    pytest.param(b'{"channel":"sms","sent_at":true}', "sent_at must be epoch seconds", "sent_at", None,
                 id="sent_at-boolean"),
    pytest.param(b'{"channel":"sms","sent_at":[1]}', "sent_at must be", "sent_at", None, id="sent_at-array"),
    pytest.param(b'{"channel":"sms","batch_date":2024.9}', "batch_date must be a date as yyyymmdd", "batch_date", None,
                 id="batch_date-float"),
    pytest.param(b'{"channel":"sms","batch_id":true}', "batch_id must be a date as yyyymmdd", "batch_id", None,
                 id="batch_id-boolean"),
    pytest.param(b'{"channel":"sms","version":2}', "version must be 1", "version", None, id="version-2"),
    pytest.param(b'{"channel":"sms","version":0}', "version must be 1", "version", None, id="version-0"),
    pytest.param(b'{"channel":"sms","version":"1"}', "version must be an integer", "version", None,
                 id="version-string"),
    pytest.param(b'{"channel":"sms","version":true}', "version must be an integer, not a boolean", "version",
                 None, id="version-true"),
    pytest.param(b'{"channel":"sms","version":1.5}', "version must be an integer", "version", None,
                 id="version-float"),
    pytest.param(BIG, f"message of {len(BIG)} bytes exceeds the limit of 100 bytes", None, 100, id="oversized"),
    pytest.param(b'{"channel":"sms","body":"\xff' + b"x" * 200 + b'"}', "exceeds the limit", None, 100,
                 id="oversized-checked-before-utf8"),
]


@pytest.mark.parametrize("raw, reason, field, max_bytes", BAD)
def test_decode_rejects(raw, reason, field, max_bytes):
    kwargs = {} if max_bytes is None else {"max_bytes": max_bytes}
    with pytest.raises(InvalidMessage) as caught:
        decode(raw, **kwargs)
    assert reason in caught.value.reason
    assert caught.value.field == field
    assert str(caught.value) == caught.value.reason


def test_decode_size_limit_is_inclusive():
    assert decode(BIG, max_bytes=len(BIG)).channel == "sms"
    with pytest.raises(InvalidMessage):
        decode(BIG, max_bytes=len(BIG) - 1)


def test_decode_mapping_is_size_checked_too():
    with pytest.raises(InvalidMessage, match="exceeds the limit"):
        decode({"channel": "sms", "body": "x" * 500}, max_bytes=100)


@pytest.mark.parametrize("record", [
    pytest.param({"channel": "fax", "to": "+15555555555"}, id="unknown-channel"),
    pytest.param({"channel": "+15555555555"}, id="number-as-channel"),
    pytest.param({"channel": "sms", "to": 15555555555}, id="to-number"),
    pytest.param({"channel": "sms", "to": ["+15555555555"]}, id="to-array"),
    pytest.param({"channel": "email", "cc": ["customer@example.com", 5]}, id="cc"),
    pytest.param({"channel": "sms", "version": "+15555555555"}, id="version"),
])
def test_reasons_never_hold_values(record):
    with pytest.raises(InvalidMessage) as caught:
        decode(json.dumps(record).encode())
    reason = caught.value.reason
    assert "15555555555" not in reason and "customer@example.com" not in reason


# --- sent_at_millis ----------------------------------------------------------

SENT_AT = [
    pytest.param(1722443282, 1722443282000, id="seconds"),
    pytest.param(1722443282680, 1722443282680, id="millis"),
    pytest.param(1722443282.5, 1722443282500, id="fractional-seconds"),
    pytest.param(1722443282680.5, 1722443282681, id="half-millisecond-rounds-up"),
    pytest.param(1722443282680.4, 1722443282680, id="sub-millisecond-rounds-down"),
    pytest.param(99_999_999_999, 99_999_999_999_000, id="just-below-threshold-is-seconds"),
    pytest.param(100_000_000_000, 100_000_000_000, id="threshold-is-millis"),
    pytest.param(0, 0, id="epoch"),
    pytest.param("1722443282", 1722443282000, id="digit-string-seconds"),
    pytest.param("1722443282680", 1722443282680, id="digit-string-millis"),
    pytest.param(" 1722443282680 ", 1722443282680, id="digit-string-padded"),
    pytest.param("1722443282.5", 1722443282500, id="decimal-string"),
    pytest.param("2024-07-31T16:28:02.680Z", 1722443282680, id="iso-z"),
    pytest.param("2024-07-31T16:28:02.680+00:00", 1722443282680, id="iso-utc-offset"),
    pytest.param("2024-07-31T18:28:02.680+02:00", 1722443282680, id="iso-plus-two"),
    pytest.param("2024-07-31T11:28:02.680-05:00", 1722443282680, id="iso-minus-five"),
    pytest.param("2024-07-31T16:28:02.680", 1722443282680, id="iso-no-zone-is-utc"),
    pytest.param("2024-07-31 16:28:02", 1722443282000, id="iso-space-separator"),
    pytest.param("2024-07-31", 1722384000000, id="iso-date-only"),
]


@pytest.mark.parametrize("value, expected", SENT_AT)
def test_sent_at_millis(value, expected, local_zone):
    assert sent_at_millis(_env(sent_at=value), NOW) == expected


SEPT_5 = 1_725_494_400_000  # 2024-09-05T00:00:00Z

SENT_AT_STAND_INS = [
    # (fields, the source's stamp, expected millis)
    pytest.param({"sent_at": 1722443282680}, NOW, 1722443282680, id="sent_at-beats-the-stamp"),
    pytest.param({"sent_at": 1722443282680, "batch_date": "20240905"}, None, 1722443282680,
                 id="sent_at-beats-the-batch"),
    pytest.param({}, NOW, NOW, id="absent-source-stamp"),
    pytest.param({"sent_at": None}, NOW, NOW, id="null-source-stamp"),
    pytest.param({"batch_date": "20240905"}, NOW, NOW, id="stamp-beats-the-batch"),
    pytest.param({"batch_date": "20240905"}, None, SEPT_5, id="batch_date"),
    pytest.param({"batch_date": 20240905}, None, SEPT_5, id="batch_date-int"),
    pytest.param({"batch_id": "20240905"}, None, SEPT_5, id="batch_id"),
    pytest.param({"batch_date": "20240905", "batch_id": "20231231"}, None, SEPT_5, id="batch_date-first"),
    pytest.param({"batch_date": "20240905"}, -1, SEPT_5, id="kafka-no-timestamp-is-no-stamp"),
    pytest.param({"batch_date": "20240905"}, -9223372036854775, SEPT_5, id="beam-min-timestamp-is-no-stamp"),
    pytest.param({"batch_date": "20240905"}, 9223372036854775, SEPT_5, id="beam-max-timestamp-is-no-stamp"),
    pytest.param({}, 0, 0, id="stamp-at-the-epoch"),
]


@pytest.mark.parametrize("fields, received, expected", SENT_AT_STAND_INS)
def test_what_stands_for_a_missing_sent_at(fields, received, expected, local_zone):
    assert sent_at_millis(_env(**fields), received) == expected


@pytest.mark.parametrize("fields, received", [
    pytest.param({}, None, id="nothing"),
    pytest.param({"sent_at": None, "batch_date": None}, None, id="nulls"),
    pytest.param({}, -1, id="kafka-no-timestamp"),
])
def test_a_missing_sent_at_with_nothing_to_stand_for_it_is_invalid(fields, received):
    with pytest.raises(InvalidMessage) as caught:
        sent_at_millis(_env(**fields), received)
    assert caught.value.field == "sent_at"
    assert caught.value.reason.startswith("sent_at is missing")


BAD_SENT_AT = [
    pytest.param(b"-1", "must not be negative", id="negative-seconds"),
    pytest.param(b"-1722443282680", "must not be negative", id="negative-millis"),
    pytest.param(b"-0.5", "must not be negative", id="negative-fraction"),
    pytest.param(b'"-5"', "sent_at", id="negative-string"),
    pytest.param(b'"yesterday"', "not an ISO-8601 time", id="words"),
    pytest.param(b'"+15555555555"', "not an ISO-8601 time", id="phone-number"),
    pytest.param(b'"2024-13-01T00:00:00Z"', "not an ISO-8601 time", id="month-13"),
    pytest.param(b'"31/07/2024"', "not an ISO-8601 time", id="dd/mm/yyyy"),
    pytest.param(b'""', "not an ISO-8601 time", id="empty-string"),
    pytest.param(b"253402300800000", "out of range", id="year-10000-millis"),
    pytest.param(b'"253402300800000"', "out of range", id="year-10000-millis-string"),
    pytest.param(b"1e300", "out of range", id="huge"),
    pytest.param(b"Infinity", "Infinity is not a JSON value", id="infinity"),
    pytest.param(b"NaN", "NaN is not a JSON value", id="nan"),
    pytest.param(b'"1969-12-31T23:59:59Z"', "sent_at", id="iso-before-epoch"),
]


@pytest.mark.parametrize("value, reason", BAD_SENT_AT)
def test_sent_at_rejects(value, reason):
    raw = b'{"channel":"push","sent_at":' + value + b"}"
    # Either decode or sent_at_millis may refuse it; both must say InvalidMessage.
    with pytest.raises(InvalidMessage) as caught:
        sent_at_millis(decode(raw), NOW)
    assert reason in caught.value.reason
    # NaN and Infinity are refused by the JSON reader, before any field is known.
    assert caught.value.field == (None if value in (b"NaN", b"Infinity") else "sent_at")
    shown = value.decode().strip('"')
    assert len(shown) < 3 or shown in ("NaN", "Infinity") or shown not in caught.value.reason


# --- year_month --------------------------------------------------------------

YEAR_MONTH = [
    pytest.param({"batch_date": "20240905"}, NOW, "202409", id="batch_date"),
    pytest.param({"batch_date": 20240905}, NOW, "202409", id="batch_date-int"),
    pytest.param({"batch_date": " 20240905 "}, NOW, "202409", id="batch_date-padded"),
    pytest.param({"batch_id": "20231231"}, NOW, "202312", id="batch_id"),
    pytest.param({"batch_id": 20240229}, NOW, "202402", id="batch_id-leap-day"),
    pytest.param({"batch_date": "20240101", "batch_id": "20241231"}, NOW, "202401", id="batch_date-wins"),
    pytest.param({"batch_date": None, "batch_id": "20241231"}, NOW, "202412", id="null-batch_date"),
    pytest.param({"batch_date": "20200115"}, _millis("2024-09-01T00:00:00+00:00"), "202001",
                 id="batch-beats-sent_at"),
    pytest.param({}, _millis("2024-08-31T23:59:59.999+00:00"), "202408", id="last-ms-of-august"),
    pytest.param({}, _millis("2024-09-01T00:00:00+00:00"), "202409", id="first-ms-of-september"),
    pytest.param({}, _millis("2024-12-31T23:59:59.999+00:00"), "202412", id="last-ms-of-year"),
    pytest.param({}, _millis("2025-01-01T00:00:00+00:00"), "202501", id="first-ms-of-year"),
    pytest.param({}, _millis("2024-09-01T01:00:00+02:00"), "202408", id="utc-not-local-east"),
    pytest.param({}, _millis("2024-08-31T20:00:00-05:00"), "202409", id="utc-not-local-west"),
    pytest.param({}, 0, "197001", id="epoch"),
]


@pytest.fixture(params=["UTC", "America/Los_Angeles", "Pacific/Kiritimati"])
def local_zone(request, monkeypatch):
    """Run under several local time zones: the archive's month must not depend on the host's."""
    monkeypatch.setenv("TZ", request.param)
    time.tzset()
    yield request.param
    monkeypatch.undo()
    time.tzset()


@pytest.mark.parametrize("fields, sent, expected", YEAR_MONTH)
def test_year_month(fields, sent, expected, local_zone):
    assert year_month(_env(**fields), sent) == expected


@pytest.mark.parametrize("fields, field", [
    pytest.param({"batch_date": "20240230"}, "batch_date", id="feb-30"),
    pytest.param({"batch_date": "20241301"}, "batch_date", id="month-13"),
    pytest.param({"batch_date": "20240900"}, "batch_date", id="day-0"),
    pytest.param({"batch_date": "2024095"}, "batch_date", id="seven-digits"),
    pytest.param({"batch_date": "202409051"}, "batch_date", id="nine-digits"),
    pytest.param({"batch_date": "2024-09-05"}, "batch_date", id="iso-date"),
    pytest.param({"batch_date": "202409"}, "batch_date", id="yyyymm"),
    pytest.param({"batch_date": ""}, "batch_date", id="empty"),
    pytest.param({"batch_date": "abcdefgh"}, "batch_date", id="letters"),
    pytest.param({"batch_date": 2024}, "batch_date", id="int-year"),
    pytest.param({"batch_id": "20241301"}, "batch_id", id="batch_id-month-13"),
    pytest.param({"batch_id": "x"}, "batch_id", id="batch_id-letters"),
    pytest.param({"batch_date": "2024-0905", "batch_id": "20240905"}, "batch_date", id="bad-date-good-id"),
])
def test_year_month_rejects_invalid_dates(fields, field):
    with pytest.raises(InvalidMessage) as caught:
        year_month(_env(**fields), NOW)
    assert caught.value.field == field
    assert f"{field} must be a date as yyyymmdd" == caught.value.reason


# --- derived_message_id ------------------------------------------------------

BASE = {"channel": "sms", "to": "15555555555", "body": "Hi there!", "sent_at": 1722443282680,
        "campaign_id": 1722529032}


def test_derived_message_id_is_sha256_hex():
    value = derived_message_id(decode(BASE))
    assert len(value) == 64 and int(value, 16) >= 0
    canonical = json.dumps(BASE, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    assert value == hashlib.sha256(canonical).hexdigest()


@pytest.mark.parametrize("other", [
    pytest.param(lambda: decode(BASE), id="same-mapping"),
    pytest.param(lambda: decode(json.dumps(BASE).encode()), id="from-bytes"),
    pytest.param(lambda: decode(json.dumps(dict(reversed(list(BASE.items())))).encode()), id="key-order"),
    pytest.param(lambda: decode(json.dumps(BASE, indent=2).encode()), id="whitespace"),
])
def test_derived_message_id_is_deterministic(other):
    assert derived_message_id(other()) == derived_message_id(decode(BASE))


@pytest.mark.parametrize("change", [
    pytest.param({"to": "15555555556"}, id="to"),
    pytest.param({"body": "Hi there"}, id="body"),
    pytest.param({"sent_at": 1722443282681}, id="sent_at"),
    pytest.param({"campaign_id": "1722529032"}, id="campaign_id-type"),
    pytest.param({"channel": "whatsapp"}, id="channel"),
    pytest.param({"provider": "twilio"}, id="added-field"),
])
def test_derived_message_id_is_sensitive(change):
    assert derived_message_id(decode({**BASE, **change})) != derived_message_id(decode(BASE))


# --- the quick checks against the full ones ---------------------------------

def _strptime_reads(text: str) -> bool:
    """What _batch_date asked before: 8 ASCII digits that strptime reads as a date."""
    import re

    if not re.fullmatch(r"[0-9]{8}", text):
        return False
    try:
        dt.datetime.strptime(text, "%Y%m%d")
    except ValueError:
        return False
    return True


def test_is_yyyymmdd_is_strptime():
    from archive.envelope import _is_yyyymmdd

    texts = [f"{year}{rest:04d}" for year in ("0000", "0001", "0004", "1582", "1900", "1970", "2000", "2023",
                                               "2024", "2100", "9999") for rest in range(10000)]
    texts += ["", "2024091", "202409011", "2024-09-01", " 20240901", "20240901 ", "+2024091", "-2024091",
              "2024\u0660901", "\uff12\uff10\uff12\uff14\uff10\uff19\uff10\uff11", "2024O901", "20240229",
              "20230229", "19000229", "20000229"]
    disagree = [text for text in texts if _is_yyyymmdd(text) != _strptime_reads(text)]
    assert not disagree, disagree[:20]


def test_year_month_of_a_send_time_is_fromtimestamps():
    import random

    rng = random.Random(7)
    day = 86_400_000
    millis = [0, 1, day - 1, day, day + 1, 253402300799999]
    for year in (1970, 1972, 1999, 2000, 2024, 2100, 9999):
        for month in range(1, 13):
            start = int(dt.datetime(year, month, 1, tzinfo=dt.timezone.utc).timestamp() * 1000)
            millis += [start - 1, start, start + 1, start + day - 1]
    millis += [rng.randrange(0, 253402300800000) for _ in range(20000)]
    envelope = _env()
    for value in millis:
        moment = dt.datetime.fromtimestamp(value / 1000, tz=dt.timezone.utc)
        assert year_month(envelope, value) == f"{moment.year:04d}{moment.month:02d}", value


_VALUES = [
    "", " ", "x", "Hi é", "\x00", "20240901", " 20240901 ", "20241301", "2024-09-01", "15555555555",
    "2024-09-01T10:00:00Z", "\ud800", "\udc00", "\ud83d\ude00", "😀", 0, 1, -1, 7, 20240901, 20241301,
    2 ** 63 - 1, 2 ** 63, -(2 ** 63), -(2 ** 63) - 1, 10 ** 99, 10 ** 100, -(10 ** 100), 10 ** 120,
    0.0, 1.5, -2.5, 1722443282.68, 1e308, True, False, None, [], ["a"], ["a", 1], [None], {}, {"a": 1},
    {"a": {"b": [1, "\ud800"]}}, {"a": "\udfff"}, json.loads("[" * 33 + "1" + "]" * 33),
    {"file_name": "a.txt", "bytes": "YQ=="}, [{"file_name": "a.txt", "bytes": "YQ=="}], [{"file_name": 1}],
]
_NAMES = sorted(ENVELOPE_FIELDS - {"channel"}) + ["Channel", "campaignId", "unknown_field", "a@example.com"]


def _decoded(raw):
    try:
        envelope = decode(raw)
    except InvalidMessage as refused:
        return ("refused", refused.reason, refused.field)
    return (envelope.channel, envelope.platform_hint, envelope.fields, envelope.original)


# Values each field takes, so that most generated records pass the quick check
# and the rest fail it by one value.
_GOOD = {
    **{name: ["Hi é", "x", "\ud83d\ude00 ok", "15555555555"] for name in (
        "to", "subject", "body", "provider", "campaign_name", "message_id", "tenant", "platform", "app_id")},
    **{name: ["u-1", 7, 2 ** 63 - 1, -(2 ** 63)] for name in (
        "user_id", "device_identity", "customer_identity", "campaign_id", "journey_id", "journey_node_id")},
    "sent_at": [1722443282680, 1722443282.68, "2024-09-01T10:00:00Z", 0, 10 ** 99],
    "batch_date": ["20240901", 20240901, " 20240229 "], "batch_id": ["20240901", 20231231],
    "version": [1, 2, 10 ** 99], "payload": [{}, {"aps": {"alert": "hi"}}], "headers": [{"X-A": "1"}],
    "cc": ["a@example.com", ["a@example.com"]], "media_urls": [["https://x/a.png"]],
}


@settings(max_examples=3000, deadline=None, database=None)
@given(st.data(), st.lists(st.sampled_from(_NAMES), max_size=8, unique=True),
       st.sampled_from(["sms", "Push", "android_push", " email ", "sms", "Sms", "WhatsApp", "fax", 7, None]),
       st.sampled_from([""] * 10 + ["1e400", "-1e400", "1" * 120, "1." + "0" * 120, "NaN"]),
       st.sampled_from([False] * 5 + [True]))
def test_decode_with_the_quick_check_is_decode_without_it(data, names, channel, number, duplicate):
    """Whatever the record, the quick check (_plain) changes nothing: the same
    envelope, or the same refusal naming the same field."""
    from unittest import mock

    import archive.envelope as envelope_module

    fields = {name: data.draw(st.sampled_from(_GOOD[name]) if name in _GOOD and data.draw(st.integers(0, 4))
                              else st.sampled_from(_VALUES)) for name in names}
    text = json.dumps({"channel": channel, **fields})  # ensure_ascii: surrogates as \\u escapes
    if number:
        text = text[:-1] + f', "sent_at": {number}' + "}"
    if duplicate and fields:
        name = next(iter(fields))
        text = text[:-1] + f", {json.dumps(name)}: 1" + "}"
    raw = text.encode("utf-8", "surrogatepass")
    quick = _decoded(raw)
    with mock.patch.object(envelope_module, "_plain", lambda record, surrogates: False):
        full = _decoded(raw)
    assert quick == full
