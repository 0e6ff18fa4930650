"""Hostile input: every record, however broken, ends in exactly one outcome.

    raw line --Archiver.prepare--> ArchiveRequest | Outcome
                      \\--InvalidMessage--> Archiver.rejected --> INVALID + dead letter (the exact bytes)

Each table is one class of hostile input (numbers, nesting, duplicate keys,
ids, text encodings, blank lines, line ends). A row says how the record must
end: archived (and as what), or INVALID (with which field and reason). The
reader's side (blank lines, CRLF) is tested on real files.
"""

from __future__ import annotations

import gzip
import hashlib
import json

import apache_beam as beam
import pytest
from apache_beam.metrics.metric import MetricsFilter

from archive import keys
from archive.archiver import ArchiveRequest, Archiver, ArchiverConfig
from archive.envelope import (
    DEFAULT_MAX_MESSAGE_BYTES, ENVELOPE_FIELDS, MAX_NESTING_DEPTH, MAX_NUMBER_DIGITS, InvalidMessage,
)
from archive.outcome import INVALID, Outcome

SENT = 1722443282680

CT_PUSH = {"channel": "push", "to": "tok-1", "payload": {"aps": {"alert": "hi"}}, "platform": "iOS",
           "sent_at": SENT, "message_id": "m-1", "campaign_id": 1722529032, "campaign_name": "c",
           "user_id": 45142169}
CT_EMAIL = {"channel": "email", "to": "jane.doe@example.com", "subject": "s", "from_address": "f@example.com",
            "headers": {"X-A": "1"}, "sent_at": SENT, "message_id": "m-1", "campaign_id": 1722529032,
            "campaign_name": "c"}
CT_SMS = {"channel": "sms", "to": "+15555555555", "body": "b", "sent_at": SENT, "message_id": "m-1",
          "campaign_id": 1722529032, "campaign_name": "c"}
BZ_EMAIL = {"channel": "email", "to": "jane.doe@example.com", "subject": "s", "from_address": "f@example.com",
            "headers": {"X-A": "1"}, "extras": {"k": "v"}, "sent_at": 1722443282, "dispatch_id": "d-1",
            "campaign_id": "ee965cb2-8934-4b0a-acf1-91c899c2f915"}

RECIPIENTS = ("tok-1", "jane.doe@example.com", "+15555555555", "15555555555", "5555555")


def _splice(record: dict, field: str, literal: str) -> bytes:
    """The record as JSON with one field's value replaced by a raw JSON literal."""
    marker = "\u0001MARK\u0001"
    text = json.dumps({**record, field: marker}, ensure_ascii=False)
    return text.replace(json.dumps(marker), literal).encode("utf-8")


def _inner(record: dict, field: str, literal: str) -> bytes:
    """Like _splice, but the literal goes one level down: {"field": {"x": literal}}."""
    return _splice(record, field, '{"x":' + literal + "}")


def _fate(profile: str, raw, **config):
    """What happens to one record; fails the test if anything but InvalidMessage escapes."""
    archiver = Archiver(ArchiverConfig(profile=profile, **config))
    try:
        result = archiver.prepare(raw)
    except InvalidMessage as error:
        outcome, dead = archiver.rejected(raw, error, source="hostile:1")
        assert outcome.status == INVALID
        assert outcome.reason == error.reason == dead.reason
        assert dead.input_sha256 == outcome.input_sha256 == hashlib.sha256(dead.data).hexdigest()
        if isinstance(raw, (bytes, str)):
            assert dead.data == _exact_bytes(raw)
        json.loads(outcome.to_json())
        json.loads(dead.to_json())
        for value in RECIPIENTS:
            assert value not in outcome.reason
        return outcome
    if isinstance(result, ArchiveRequest):
        document = archiver.codec.decompress(result.data)
        _strict_loads(document)
    return result


def _exact_bytes(raw) -> bytes:
    """The bytes a str was decoded from (surrogateescape), else its code points as they are."""
    if isinstance(raw, bytes):
        return raw
    try:
        return raw.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return raw.encode("utf-8", "surrogatepass")


def _strict_loads(document: bytes):
    def constant(name):
        raise AssertionError(f"archived {name}: not JSON")

    def pairs(items):
        assert len({k for k, _ in items}) == len(items), "archived duplicate keys"
        return dict(items)
    return json.loads(document.decode("utf-8"), parse_constant=constant, object_pairs_hook=pairs)


def _invalid(profile: str, raw, field, *reason_parts, **config):
    outcome = _fate(profile, raw, **config)
    assert isinstance(outcome, Outcome) and outcome.status == INVALID, f"not INVALID: {outcome!r}"[:300]
    assert outcome.field == field
    for part in reason_parts:
        assert part in outcome.reason
    return outcome


def _archived(profile: str, raw, **config):
    request = _fate(profile, raw, **config)
    assert isinstance(request, ArchiveRequest), f"not archived: {request!r}"[:300]
    return _strict_loads(Archiver(ArchiverConfig(profile=profile, **config)).codec.decompress(request.data))


# --- 1. numbers: strict JSON out, whatever comes in -------------------------------------

OVERFLOWING = [
    # (profile, raw, field)
    pytest.param("clevertap", _inner(CT_PUSH, "payload", "1e400"), "payload", id="payload-1e400"),
    pytest.param("clevertap", _inner(CT_PUSH, "payload", "-1e400"), "payload", id="payload-minus-1e400"),
    pytest.param("clevertap", _splice(CT_PUSH, "payload", '{"a":[1,{"b":[2e308]}]}'), "payload",
                 id="payload-deep-2e308"),
    pytest.param("clevertap", _inner(CT_EMAIL, "headers", "1e400"), "headers", id="ct-headers-1e400"),
    pytest.param("braze", _inner(BZ_EMAIL, "headers", "-1e400"), "headers", id="bz-headers-minus-1e400"),
    pytest.param("braze", _inner(BZ_EMAIL, "extras", "1E+400"), "extras", id="bz-extras-1E+400"),
    pytest.param("braze", _inner(BZ_EMAIL, "extras", "-0.5e99999"), "extras", id="bz-extras-huge-exponent"),
    pytest.param("clevertap", _splice(CT_PUSH, "sent_at", "1e400"), "sent_at", id="sent_at-1e400"),
]


@pytest.mark.parametrize("profile, raw, field", OVERFLOWING)
def test_a_number_beyond_a_float_is_invalid(profile, raw, field):
    outcome = _invalid(profile, raw, field, field, "64-bit float")
    assert "Infinity" not in outcome.reason and "400" not in outcome.reason


BIG_INTEGERS = [
    # (profile, raw, path to the value in the archived payload, value)
    pytest.param("clevertap", _inner(CT_PUSH, "payload", str(2 ** 70)), ("payload", "x"), 2 ** 70, id="2**70"),
    pytest.param("clevertap", _inner(CT_PUSH, "payload", "-" + "9" * 99), ("payload", "x"), -int("9" * 99),
                 id="99-digits-negative"),
    pytest.param("braze", _inner(BZ_EMAIL, "extras", "9" * MAX_NUMBER_DIGITS), ("extras", "x"),
                 int("9" * MAX_NUMBER_DIGITS), id="at-the-limit"),
]


@pytest.mark.parametrize("profile, raw, path, value", BIG_INTEGERS)
def test_big_integers_in_content_are_kept_exactly(profile, raw, path, value):
    document = _archived(profile, raw)
    assert document[path[0]][path[1]] == value


TOO_LONG_NUMBERS = [
    # (profile, raw, field)
    pytest.param("clevertap", _inner(CT_PUSH, "payload", "9" * (MAX_NUMBER_DIGITS + 1)), "payload",
                 id="payload-one-digit-over"),
    pytest.param("clevertap", _inner(CT_PUSH, "payload", "9" * 4301), "payload", id="payload-4301-digits"),
    pytest.param("clevertap", _inner(CT_PUSH, "payload", "1" * 100_000), "payload", id="payload-100k-digits"),
    pytest.param("clevertap", _inner(CT_PUSH, "payload", "0." + "1" * 5000), "payload", id="payload-long-fraction"),
    pytest.param("clevertap", _splice(CT_PUSH, "campaign_id", "9" * 5000), "campaign_id", id="campaign_id-5000"),
    pytest.param("clevertap", _splice(CT_PUSH, "sent_at", "1" * 5000), "sent_at", id="sent_at-5000"),
    pytest.param("braze", _splice(BZ_EMAIL, "version", "1" * 5000), "version", id="version-5000"),
    pytest.param("braze", _splice(BZ_EMAIL, "batch_date", "2" * 5000), "batch_date", id="batch_date-5000"),
]


@pytest.mark.parametrize("profile, raw, field", TOO_LONG_NUMBERS)
def test_a_too_long_number_literal_is_invalid(profile, raw, field):
    _invalid(profile, raw, field, f"more than {MAX_NUMBER_DIGITS} digits")


MAPPINGS = [
    # (profile, record, field, reason part): a Parquet row arrives as a mapping, not as JSON text
    pytest.param("clevertap", {**CT_PUSH, "payload": {"badge": float("nan")}}, "payload", "not JSON", id="nan"),
    pytest.param("clevertap", {**CT_PUSH, "payload": {"badge": float("inf")}}, "payload", "not JSON", id="inf"),
    pytest.param("braze", {**BZ_EMAIL, "headers": {"a": [float("-inf")]}}, "headers", "not JSON", id="minus-inf"),
    pytest.param("clevertap", {**CT_PUSH, "sent_at": float("nan")}, "sent_at", "not JSON", id="sent_at-nan"),
    pytest.param("clevertap", {**CT_PUSH, "payload": {"blob": b"\x00\xff"}}, "payload", "not a JSON value",
                 id="bytes-in-payload"),
    pytest.param("clevertap", {**CT_PUSH, "payload": {"when": object()}}, "payload", "not a JSON value",
                 id="object-in-payload"),
    pytest.param("clevertap", {**CT_PUSH, "payload": {1: "a"}}, "payload", "not a string", id="int-key"),
    pytest.param("clevertap", {**CT_PUSH, 7: "a"}, None, "not a string", id="int-top-level-key"),
    pytest.param("clevertap", {**CT_PUSH, "payload": {"x": 10 ** 200}}, "payload",
                 f"more than {MAX_NUMBER_DIGITS} digits", id="huge-int"),
    pytest.param("clevertap", {**CT_PUSH, "payload": {"x": "\ud800"}}, "payload", "unpaired surrogate",
                 id="lone-surrogate"),
    pytest.param("clevertap", {**CT_PUSH, "payload": {"\udcff": 1}}, "payload", "unpaired surrogate",
                 id="lone-surrogate-key"),
]


@pytest.mark.parametrize("profile, record, field, reason", MAPPINGS)
def test_a_mapping_with_non_json_values_is_invalid(profile, record, field, reason):
    outcome = _invalid(profile, record, field, reason)
    assert outcome.input_bytes > 0  # the dead letter keeps the row, as JSON or as its repr


# --- 2. nesting ------------------------------------------------------------------------------

def _nested(depth: int) -> str:
    """A JSON value whose innermost array sits `depth` levels deep (an array alone is 1)."""
    return "[" * depth + "]" * depth


NESTING = [
    # (profile, raw, field)
    pytest.param("clevertap", _splice(CT_PUSH, "payload", '{"x":' + _nested(MAX_NESTING_DEPTH - 1) + "}"),
                 "payload", id="one-level-over"),
    pytest.param("clevertap", _splice(CT_PUSH, "payload", '{"x":' + _nested(500) + "}"), "payload", id="502"),
    pytest.param("clevertap", _splice(CT_PUSH, "payload", '{"x":' + _nested(100_000) + "}"), None, id="100k"),
    pytest.param("braze", _splice(BZ_EMAIL, "extras", '{"a":' * 2000 + "1" + "}" * 2000), None,
                 id="objects-2000"),
    pytest.param("clevertap", _nested(5000).encode(), None, id="bare-arrays-5000"),
    pytest.param("clevertap", ("[" * 10_000).encode(), None, id="unclosed-10k"),
    pytest.param("braze", _splice(BZ_EMAIL, "attachments", _nested(40)), "attachments", id="attachments-40"),
]


@pytest.mark.parametrize("profile, raw, field", NESTING)
def test_deep_nesting_is_invalid_and_names_the_limit(profile, raw, field):
    outcome = _invalid(profile, raw, field, f"deeper than {MAX_NESTING_DEPTH} levels")
    assert outcome.input_bytes == len(raw)


def test_nesting_at_the_limit_is_archived():
    # record (1) > payload (2) > "x" array (3) > ... : the innermost array at level 32.
    raw = _splice(CT_PUSH, "payload", '{"x":' + _nested(MAX_NESTING_DEPTH - 2) + "}")
    document = _archived("clevertap", raw)
    depth, value = 2, document["payload"]["x"]
    while value:
        depth, value = depth + 1, value[0]
    assert depth + 1 == MAX_NESTING_DEPTH


def test_a_deep_mapping_is_invalid_and_its_dead_letter_is_kept():
    inner: dict = {}
    row = {**CT_PUSH, "payload": inner}
    for _ in range(5000):  # built iteratively: deeper than any recursive walk could go
        inner["x"] = {}
        inner = inner["x"]
    outcome = _invalid("clevertap", row, "payload", f"deeper than {MAX_NESTING_DEPTH} levels")
    _, dead = Archiver().rejected(row, InvalidMessage(outcome.reason, outcome.field))
    assert dead.data.count(b'{"x":') == 5000 and json.loads(dead.to_json())


# --- 3. duplicate keys -----------------------------------------------------------------------

DUPLICATES = [
    # (profile, raw, field, name shown in the reason or None)
    pytest.param("clevertap", b'{"channel":"sms","to":"+15555555555","to":"+15555555556","body":"b",'
                 b'"sent_at":1722443282680,"message_id":"m","campaign_id":1,"campaign_name":"c"}', "to", "'to'",
                 id="two-to"),
    pytest.param("clevertap", b'{"channel":"sms","channel":"sms","to":"+15555555555","body":"b"}', "channel",
                 "'channel'", id="same-value-twice"),
    pytest.param("clevertap", _splice(CT_PUSH, "payload", '{"aps":1,"aps":2}'), "payload", None,
                 id="in-payload"),
    pytest.param("braze", _splice(BZ_EMAIL, "headers", '{"X":[{"a":1,"a":1}]}'), "headers", None,
                 id="in-array-in-headers"),
    pytest.param("braze", b'{"channel":"email","jane.doe@example.com":1,"jane.doe@example.com":2}', None, None,
                 id="address-as-key"),
    pytest.param("braze", _splice(BZ_EMAIL, "extras", '{"+15555555555":1,"+15555555555":2}'), "extras", None,
                 id="phone-as-nested-key"),
    pytest.param("braze", _splice(BZ_EMAIL, "extras", '{"Test_Push_Token12345":1,"Test_Push_Token12345":2}'),
                 "extras", None, id="token-as-nested-key"),
    pytest.param("braze", b'{"channel":"push","Test_Push_Token12345":1,"Test_Push_Token12345":2}', None, None,
                 id="token-as-key"),
    pytest.param("clevertap", b'{"channel":"sms","\\u0074o":"+15555555555","to":"+15555555556"}', "to", "'to'",
                 id="escaped-spelling"),
]


@pytest.mark.parametrize("profile, raw, field, shown", DUPLICATES)
def test_duplicate_keys_are_invalid_at_any_level(profile, raw, field, shown):
    outcome = _invalid(profile, raw, field, "duplicate key")
    if shown:
        assert shown in outcome.reason
    else:
        assert "'" not in outcome.reason  # no key named
    assert "@" not in outcome.reason and "5555" not in outcome.reason and "Token" not in outcome.reason


# --- 6. integer ids fit 64 bits --------------------------------------------------------------

INT64_MAX = 2 ** 63 - 1

IDS = [
    # (profile, record, field)
    pytest.param("clevertap", {**CT_SMS, "campaign_id": INT64_MAX + 1}, "campaign_id", id="campaign_id-2**63"),
    pytest.param("clevertap", {**CT_SMS, "campaign_id": 10 ** 30}, "campaign_id", id="campaign_id-10**30"),
    pytest.param("clevertap", {**CT_SMS, "campaign_id": "9223372036854775808"}, "campaign_id",
                 id="campaign_id-string-2**63"),
    pytest.param("clevertap", {**CT_SMS, "campaign_id": "9999999999999999999"}, "campaign_id",
                 id="campaign_id-string-19-nines"),
    pytest.param("clevertap", {**CT_PUSH, "user_id": 2 ** 64}, "user_id", id="user_id-2**64"),
    pytest.param("clevertap", {**CT_PUSH, "user_id": -(2 ** 63) - 1}, "user_id", id="user_id-below-min"),
    pytest.param("clevertap", {**CT_PUSH, "user_id": None, "device_identity": 2 ** 63}, "device_identity",
                 id="device_identity"),
    pytest.param("clevertap", {**CT_PUSH, "user_id": None, "customer_identity": 2 ** 63}, "customer_identity",
                 id="customer_identity"),
    pytest.param("clevertap", {**CT_PUSH, "journey_id": 2 ** 63}, "journey_id", id="journey_id"),
    pytest.param("clevertap", {**CT_PUSH, "journey_id": 1, "journey_node_id": 2 ** 63}, "journey_node_id",
                 id="journey_node_id"),
    pytest.param("clevertap", {**CT_PUSH, "journey_id": "9223372036854775808"}, "journey_id",
                 id="journey_id-string"),
    pytest.param("braze", {**BZ_EMAIL, "campaign_id": 2 ** 63}, "campaign_id", id="braze-campaign_id"),
    pytest.param("braze", {**BZ_EMAIL, "user_id": 2 ** 64}, "user_id", id="braze-user_id"),
]


@pytest.mark.parametrize("profile, record, field", IDS)
def test_integer_ids_must_fit_64_bits(profile, record, field):
    _invalid(profile, json.dumps(record).encode(), field, "64-bit")


@pytest.mark.parametrize("record, path, value", [
    pytest.param({**CT_SMS, "campaign_id": INT64_MAX}, "campaign_id", INT64_MAX, id="campaign_id-max"),
    pytest.param({**CT_SMS, "campaign_id": str(INT64_MAX)}, "campaign_id", INT64_MAX, id="campaign_id-string-max"),
    pytest.param({**CT_PUSH, "user_id": -(2 ** 63)}, "user_id", -(2 ** 63), id="user_id-min"),
    pytest.param({**CT_PUSH, "journey_id": INT64_MAX}, "journey_id", INT64_MAX, id="journey_id-max"),
])
def test_integer_ids_at_the_64_bit_bounds_are_archived(record, path, value):
    assert _archived("clevertap", json.dumps(record).encode())[path] == value


# --- 8. ids that would bend the key ------------------------------------------------------------

ID_VALUES = [
    pytest.param("a\u2215b", id="division-slash"),
    pytest.param("a\uff0fb", id="fullwidth-slash"),
    pytest.param("\u2024\u2024", id="one-dot-leaders"),
    pytest.param("\uff0e\uff0e", id="fullwidth-dots"),
    pytest.param("a\u2024\u2024\u2215b", id="lookalike-parent"),
    pytest.param("a%2Fb", id="percent-slash"),
    pytest.param("%2E%2E", id="percent-dots"),
    pytest.param("..%2Fetc", id="percent-parent"),
    pytest.param("x" * (keys.MAX_SEGMENT_LENGTH + 1), id="over-long"),
    pytest.param("x" * 100_000, id="very-long"),
    pytest.param("a\u0000b", id="nul"),
    pytest.param("a\u200bb", id="zero-width-space"),
]


@pytest.mark.parametrize("value", ID_VALUES)
@pytest.mark.parametrize("profile, record, field", [
    pytest.param("clevertap", CT_SMS, "message_id", id="ct-message_id"),
    pytest.param("braze", BZ_EMAIL, "dispatch_id", id="bz-dispatch_id"),
    pytest.param("braze", BZ_EMAIL, "campaign_id", id="bz-campaign_id"),
    pytest.param("braze", {**BZ_EMAIL, "campaign_id": None}, "canvas_step_id", id="bz-canvas_step_id"),
])
def test_ids_that_would_bend_the_key_are_invalid(profile, record, field, value):
    outcome = _invalid(profile, json.dumps({**record, field: value}, ensure_ascii=False).encode(), field)
    assert value not in outcome.reason


def test_a_profile_key_over_1024_bytes_is_invalid(monkeypatch):
    # Today's segment limit keeps keys short; the key limit holds even if it is raised.
    monkeypatch.setattr(keys, "MAX_SEGMENT_LENGTH", 2000)
    record = {**BZ_EMAIL, "dispatch_id": "d" * 600, "campaign_id": "c" * 600}
    _invalid("braze", json.dumps(record).encode(), None, "1024 bytes")


# --- 8. text encodings, BOM, NUL, blank lines --------------------------------------------------

def _ct_sms_with(literal: str | bytes) -> bytes:
    """CT_SMS as JSON with its body replaced by a raw literal (bytes are spliced in as they are)."""
    if isinstance(literal, str):
        literal = literal.encode("utf-8")
    return json.dumps({**CT_SMS, "body": "x"}).encode().replace(b'"x"', literal)


ENCODINGS = [
    # (raw, field, reason part)
    pytest.param(b"", None, "empty", id="empty"),
    pytest.param(b"   ", None, "blank line", id="spaces"),
    pytest.param(b"\t", None, "blank line", id="tab"),
    pytest.param(b"\r", None, "blank line", id="lone-cr"),
    pytest.param(b" \t \r", None, "blank line", id="mixed-whitespace"),
    pytest.param(b"\xef\xbb\xbf" + json.dumps(CT_SMS).encode(), None, "byte order mark", id="bom-record"),
    pytest.param(b"\xef\xbb\xbf", None, "byte order mark", id="bom-alone"),
    pytest.param("\ufeff" + json.dumps(CT_SMS), None, "byte order mark", id="bom-str"),
    pytest.param(b" \xef\xbb\xbf{}", None, "malformed JSON", id="bom-after-space"),
    pytest.param(json.dumps(CT_SMS).encode() + b"\x00", None, "malformed JSON", id="trailing-nul"),
    pytest.param(b"\x00" * 16, None, "malformed JSON", id="only-nul"),
    pytest.param(_ct_sms_with('"a\x00b"'), None, "malformed JSON", id="raw-nul-in-string"),
    pytest.param(_ct_sms_with('"\\ud800"'), "body", "unpaired surrogate", id="lone-high-surrogate"),
    pytest.param(_ct_sms_with('"\\udfff"'), "body", "unpaired surrogate", id="lone-low-surrogate"),
    pytest.param(_ct_sms_with('"\\udc00\\ud800"'), "body", "unpaired surrogate", id="reversed-pair"),
    pytest.param(_splice(CT_PUSH, "payload", '{"\\ud800":1}'), "payload", "unpaired surrogate", id="in-nested-key"),
    pytest.param(b'{"channel":"sms","\\ud800":1}', None, "unpaired surrogate", id="in-top-level-key"),
    pytest.param(_ct_sms_with('"\\u0000"').replace(b'"m-1"', b'"m\\u0000"'), "message_id", "key layout",
                 id="escaped-nul-in-id"),
    pytest.param(_ct_sms_with(b'"\xc0\xaf"'), None, "not valid UTF-8", id="overlong-utf8"),
    pytest.param(_ct_sms_with(b'"\xed\xa0\x80"'), None, "not valid UTF-8", id="cesu-surrogate"),
    pytest.param(json.dumps(CT_SMS).encode()[:-2] + b'\xe2\x82"}', None, "not valid UTF-8", id="truncated-char"),
    pytest.param(b'{"channel":"sms","t\xffo":1}', None, "not valid UTF-8", id="invalid-utf8-in-key"),
    pytest.param(json.dumps(CT_SMS).encode()[:40], None, "malformed JSON", id="truncated-json"),
    pytest.param(None, None, "no value", id="kafka-tombstone"),
]


@pytest.mark.parametrize("raw, field, reason", ENCODINGS)
def test_encoding_trouble_is_invalid(raw, field, reason):
    _invalid("clevertap", raw, field, reason)


@pytest.mark.parametrize("text", [
    pytest.param('"\\u0000 escaped NUL is JSON"', id="escaped-nul-in-body"),
    pytest.param('"\\ud83d\\ude00 a paired surrogate"', id="paired-surrogates"),
    pytest.param('"\\\\ud800 is an escaped backslash"', id="backslash-then-ud800"),
])
def test_legal_escapes_are_archived(text):
    assert _archived("clevertap", _ct_sms_with(text))["body"] == json.loads(text)


def test_crlf_line_is_archived_with_its_cr_as_whitespace():
    raw = json.dumps(CT_SMS).encode() + b"\r"
    assert _archived("clevertap", raw)["body"] == "b"


@pytest.mark.parametrize("extra, archived", [
    pytest.param(0, True, id="at-the-limit"),
    pytest.param(1, False, id="one-byte-over"),
])
def test_multi_megabyte_strings_near_the_size_limit(extra, archived):
    base = json.dumps({**CT_SMS, "body": ""}).encode()
    body = "\u00e9" * ((DEFAULT_MAX_MESSAGE_BYTES - len(base)) // 2) + "x" * ((DEFAULT_MAX_MESSAGE_BYTES - len(base)) % 2)
    raw = base.replace(b'"body": ""', b'"body": "' + body.encode() + b"x" * extra + b'"')
    assert len(raw) == DEFAULT_MAX_MESSAGE_BYTES + extra
    if archived:
        assert _archived("clevertap", raw)["body"] == body
    else:
        _invalid("clevertap", raw, None, "exceeds the limit")


WRONG_TYPES = [object(), True, False, 1.5, -1, 0, 2 ** 70, "", " ", "x", [], [1], {}, {"a": None}, ["\ud800"]]


@pytest.mark.parametrize("field", sorted(ENVELOPE_FIELDS))
@pytest.mark.parametrize("profile, record", [
    pytest.param("clevertap", CT_PUSH, id="ct-push"), pytest.param("clevertap", CT_EMAIL, id="ct-email"),
    pytest.param("braze", BZ_EMAIL, id="bz-email"),
])
def test_wrong_types_anywhere_give_one_outcome(profile, record, field):
    for value in WRONG_TYPES:
        mapping = {**record, field: value}
        _fate(profile, mapping)
        if type(value) is not object:  # the same record as JSON text
            _fate(profile, json.dumps(mapping).encode())


@pytest.mark.parametrize("raw", [
    pytest.param(None, id="none"), pytest.param(bytearray(b'{"channel":"x"}'), id="bytearray"),
    pytest.param(memoryview(b"{"), id="memoryview"), pytest.param(b"\xff" * 1000, id="binary"),
    pytest.param("{\"channel\":\"sms\",\"body\":\"\ud800\"}", id="str-with-lone-surrogate"),
    pytest.param('{"channel":"sms","message_id":"\udcff"}', id="str-with-escaped-byte"),
    pytest.param(b'{"channel":"sms","message_id":' + b"7" * 5000 + b"}", id="best-effort-huge-id"),
    pytest.param(b'{"channel":"sms","message_id":"m","x":' + _nested(3000).encode() + b"}", id="best-effort-deep"),
])
def test_rejected_never_raises(raw):
    archiver = Archiver()
    for error in (InvalidMessage("r"), InvalidMessage("r", "to")):
        outcome, dead = archiver.rejected(raw, error)
        assert outcome.status == INVALID and dead.input_sha256 == outcome.input_sha256
        json.loads(dead.to_json())
    _fate("clevertap", raw)


# --- 4, 5. the reader: blank lines and line ends, on real files -------------------------------

VALID_LINE = json.dumps(CT_SMS).encode()
INVALID_LINE = b'{"channel":"sms","to":"+15555555555"'
LINES = [
    VALID_LINE + b"\r\n",       # CRLF, valid
    INVALID_LINE + b"\r\n",     # CRLF, invalid: its dead letter keeps the CR
    b"\n",                      # empty: skipped, counted
    b"   \n",                   # whitespace only: INVALID
    b"\r\n",                    # a lone CR: INVALID
    b"\n",                      # empty again
    b"\t\r\n",                  # whitespace and CR: INVALID
    VALID_LINE.replace(b'"m-1"', b'"m-2"') + b"\n",
    INVALID_LINE,               # last line, no terminator
]


def _write(tmp_path, compressed: bool) -> str:
    data = b"".join(LINES)
    path = tmp_path / ("in.jsonl.gz" if compressed else "in.jsonl")
    path.write_bytes(gzip.compress(data) if compressed else data)
    return str(path)


@pytest.mark.parametrize("compressed", [False, True], ids=["plain", "gzip"])
def test_reader_keeps_each_line_minus_its_newline(tmp_path, compressed):
    from pipeline.sources import _json_lines

    url = _write(tmp_path, compressed)
    blanks = []
    records = list(_json_lines(url, {}, on_blank_line=lambda: blanks.append(1)))
    expected = [(line[:-1] if line.endswith(b"\n") else line, f"{url}:{n}")
                for n, line in enumerate(LINES, start=1) if line != b"\n"]
    assert [(r.data, r.source) for r in records] == expected
    assert len(blanks) == 2

    archiver = Archiver()
    fates = []
    for record in records:
        try:
            fates.append(archiver.prepare(record.data, record.source))
        except InvalidMessage as error:
            outcome, dead = archiver.rejected(record.data, error, record.source)
            assert dead.data == record.data
            assert outcome.input_sha256 == hashlib.sha256(record.data).hexdigest()
            fates.append(outcome)
    assert [isinstance(f, ArchiveRequest) for f in fates] == [True, False, False, False, False, True, False]
    assert [f.reason.split(":")[0] for f in fates if isinstance(f, Outcome)] == \
        ["malformed JSON", "blank line", "blank line", "blank line", "malformed JSON"]
    crlf_dead = archiver.rejected(records[1].data, InvalidMessage("x"))[1]
    assert crlf_dead.data == INVALID_LINE + b"\r"
    assert crlf_dead.input_sha256 == hashlib.sha256(INVALID_LINE + b"\r").hexdigest()


def test_read_outbound_messages_counts_blank_lines(tmp_path, test_pipeline):
    from pipeline.sources import ReadOutboundMessages

    url = _write(tmp_path, False)
    p = test_pipeline()
    _ = p | ReadOutboundMessages(url) | beam.Map(lambda r: r)
    result = p.run()
    result.wait_until_finish()
    counters = {c.key.metric.name: c.committed
                for c in result.metrics().query(MetricsFilter().with_namespace("archive"))["counters"]}
    assert counters["blank_lines"] == 2
    assert counters["input_records"] == len(LINES) - 2
