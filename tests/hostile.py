"""Hostile input records for tests: seed-shaped valid records and every class of breakage.

    valid record (dict, per profile and channel) --mutation--> raw bytes, class name
        hostile_records(seed, count)   deterministic, plain `random`: corpora, end-to-end fuzz runs
        hostile_inputs()               the same generator as a hypothesis strategy, plus free-form bytes
    check_one(archiver, raw)           the invariants every record must keep, whatever it is

Test-data generation lives here, not in archive/: the domain package only
reads records. Recipients are drawn from RECIPIENTS, so a check can prove no
recipient leaks into a reason; KEY_PATTERNS are written from the seeds'
layouts, not from the code that builds keys.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from typing import Any, Callable, Iterator

from archive.archiver import ArchiveRequest, Archiver
from archive.encoding import get_codec
from archive.envelope import InvalidMessage
from archive.outcome import FAILED, INVALID, SKIPPED, Outcome

EMAILS = ("jane.doe@example.com", "Customer@Example.com", "o'brien+tag@mail.example.org")
PHONES = ("+15555555555", "+447911123456", "15555555555", "+4915123456789")
TOKENS = ("frfsgvrwe:APfdsafsgdfsgghfgfgjkhfsfgdhjhbvcvnetry767456fxsasdf", "Test_Push_Token12345")
RECIPIENTS = EMAILS + PHONES + TOKENS
# Fragments that give a recipient away even when cut or reformatted.
RECIPIENT_FRAGMENTS = ("jane.doe", "@example", "5555555", "7911123456", "5123456789", "APfdsafsg",
                       "Test_Push_Token")
TENANTS = (None, "acme", "globex", "initech")  # initech: no destination in a tenant file

SENT_MILLIS = 1722443282680
_SEGMENT = r"[A-Za-z0-9_][A-Za-z0-9_.~=+@,:-]{0,199}"
_SUFFIX = r"\.json(\.lz4|\.gz|\.zst)?"
KEY_PATTERNS = {
    # sent_messages/<channel>/<yyyymm>/<campaign_id>/<md5 of identity>/<message_id>.json.lz4
    "clevertap": re.compile(
        r"sent_messages/(Email|Push|Sms|WhatsApp)/[0-9]{4}(0[1-9]|1[0-2])/[0-9]{1,19}/[0-9a-f]{32}/"
        + _SEGMENT + _SUFFIX),
    # sent_messages/<email|push|sms>/<md5>/<campaign or canvas step id, or unassociated>/<dispatch_id>.json.gz
    "braze": re.compile(r"sent_messages/(email|push|sms)/[0-9a-f]{32}/" + _SEGMENT + "/" + _SEGMENT + _SUFFIX),
}
MAX_KEY_BYTES = 1024
INT64_MAX = 2 ** 63 - 1

ID_FIELDS = ("message_id", "dispatch_id", "campaign_id", "canvas_step_id", "user_id", "device_identity",
             "customer_identity", "journey_id", "journey_node_id")


# --- valid, seed-shaped records ---------------------------------------------------------------

def _clevertap(rng: random.Random, channel: str) -> dict:
    record: dict[str, Any] = {"channel": rng.choice({"push": ("Push", "push", "ios_push"), "email": ("Email",),
                                                     "sms": ("Sms", "sms"), "whatsapp": ("WhatsApp",)}[channel])}
    if channel == "push":
        record.update(to=rng.choice(TOKENS), payload={"aps": {"alert": {"title": "Flat Offer", "body": "20% off"},
                                                              "badge": rng.randint(0, 9)}},
                      platform=rng.choice(("iOS", "ios")) if record["channel"] != "ios_push" else "iOS")
    elif channel == "email":
        record.update(to=rng.choice(EMAILS), subject="20% off coupon inside!", from_name="CleverTap",
                      from_address="no-reply@clevertap.com", html_body="<p>Hi ☕</p>", plaintext_body="Hi",
                      headers={"X-Campaign": "1"})
    else:
        record.update(to=rng.choice(PHONES), body="Hi there!", provider="twilio")
    record.update(sent_at=SENT_MILLIS + rng.randint(0, 10 ** 9), campaign_id=rng.choice((1722529032, "1722529032")),
                  campaign_name="Flat Offer Sale Campaign", user_id=rng.choice((45142169, "45142169")))
    if rng.random() < 0.7:
        record["message_id"] = "%064x" % rng.getrandbits(256)
    if rng.random() < 0.3:
        record.update(journey_id=2450, journey_node_id=1, journey_name="Flat Offer Sale Journey")
    if rng.random() < 0.2:
        record["batch_date"] = "20240731"
    return record


def _braze(rng: random.Random, channel: str) -> dict:
    record: dict[str, Any] = {"channel": channel}
    if channel == "push":
        record.update(to=rng.choice(TOKENS), payload={"aps": {"alert": "hi"}},
                      platform=rng.choice(("ios_push", "android_push", "kindle_push", "web_push")),
                      app_id="f1e2d3c4-b5a6-4978-8695-a4b3c2d1e0f9")
    elif channel == "email":
        record.update(to=rng.choice(EMAILS), subject="20% off coupon inside!", from_name="Braze",
                      from_address="no-reply@braze.com", html_body="<p>Hi</p>", extras={"order_id": "A-1001"},
                      headers={"List-Unsubscribe": "<mailto:u@braze.com>"},
                      attachments=[{"file_name": "coupon.txt", "bytes": "aGVsbG8="}])
    else:
        record.update(to=rng.choice(PHONES[:2] + PHONES[3:]), body="Hi there!", subscription_group="sg-1",
                      provider="twilio")
        if channel == "mms":
            record["media_urls"] = ["https://cdn.example.com/coupon.png"]
    record.update(sent_at=1722443282 + rng.randint(0, 10 ** 6),
                  dispatch_id="%032x" % rng.getrandbits(128), user_id="5f9d3e2a1b0c4d5e6f7a8b9c",
                  external_id="customer-42")
    roll = rng.random()
    if roll < 0.5:
        record["campaign_id"] = "ee965cb2-8934-4b0a-acf1-91c899c2f915"
        record["campaign_name"] = "Flat Offer Sale Campaign"
    elif roll < 0.8:
        record.update(canvas_id="0b1c5a1e-6f39-4a53-9d8f-2b3a7c6b8e01",
                      canvas_step_id="7e2f1a9c-3b4d-4c5e-8f6a-1b2c3d4e5f60", canvas_name="Welcome")
    return record


SEEDS = {("clevertap", c): (lambda rng, c=c: _clevertap(rng, c)) for c in ("push", "email", "sms", "whatsapp")}
SEEDS.update({("braze", c): (lambda rng, c=c: _braze(rng, c)) for c in ("push", "email", "sms", "mms")})


# --- mutations: each returns the record's raw bytes ---------------------------------------------

_MARK = "\u0001HOSTILE\u0001"


def _dump(record: dict, rng: random.Random) -> bytes:
    return json.dumps(record, ensure_ascii=rng.random() < 0.3).encode("utf-8")


def _splice(record: dict, rng: random.Random, literal: bytes, field: str | None = None) -> bytes:
    """The record as JSON with one value (of `field`, or of a random object field) replaced
    by raw bytes, which need not be JSON."""
    record = json.loads(json.dumps(record))  # a deep copy
    target = record
    if field is None:
        containers = [v for k, v in record.items() if isinstance(v, dict) and k in ("payload", "headers", "extras")]
        if containers and rng.random() < 0.7:
            target = rng.choice(containers)
        field = rng.choice(["x", *target]) if target is not record else rng.choice(list(record))
    target[field] = _MARK
    return _dump(record, rng).replace(json.dumps(_MARK).encode(), literal)


def _valid(record, rng, max_bytes):
    return _dump(record, rng)


def _truncated(record, rng, max_bytes):
    data = _dump(record, rng)
    return data[:rng.randrange(0, len(data))]


def _invalid_utf8(record, rng, max_bytes):
    bad = rng.choice((b"\xff", b"\xfe\xff", b"\xc0\xaf", b"\xed\xa0\x80", b"\xe2\x82", b"\xf8\x88\x80\x80\x80",
                      b"\x80"))
    return _splice(record, rng, b'"a' + bad + b'b"')


def _lone_surrogate(record, rng, max_bytes):
    escape = rng.choice((b"\\ud800", b"\\udfff", b"\\uDBFF", b"\\udc00\\ud800"))
    if rng.random() < 0.3:  # in a key
        return _splice(record, rng, b'{"' + escape + b'":1}')
    return _splice(record, rng, b'"x' + escape + b'"', rng.choice([None, *sorted(record)]))


def _huge_number(record, rng, max_bytes):
    digits = rng.choice((20, 99, 100, 101, 400, 4300, 4301, 20_000))
    literal = (b"-" if rng.random() < 0.3 else b"") + b"9" * digits
    if rng.random() < 0.2:
        literal += b"." + b"1" * rng.choice((5, 200))
    return _splice(record, rng, literal, rng.choice([None, None, "sent_at", *ID_FIELDS]))


def _non_finite(record, rng, max_bytes):
    literal = rng.choice((b"1e400", b"-1e400", b"1E+309", b"NaN", b"Infinity", b"-Infinity", b"2e308"))
    return _splice(record, rng, literal, rng.choice([None, None, "sent_at", "payload", "headers", "extras"]))


def _deep_nesting(record, rng, max_bytes):
    depth = rng.choice((29, 30, 31, 32, 40, 999, 1000, 5000, 100_000))
    opener, closer = rng.choice(((b"[", b"]"), (b'{"a":', b"}")))
    inner = opener * depth + b"1" + closer * depth
    if rng.random() < 0.1:
        inner = opener * depth  # never closed
    return _splice(record, rng, inner)


def _long_string(record, rng, max_bytes):
    size = max(0, max_bytes - len(_dump(record, rng)) + rng.choice((-200, -12, -1, 0, 1, 2, 1000)))
    field = rng.choice(("body", "subject", "html_body", "payload", "extras"))
    char = rng.choice(("x", "é", "☕", "\U0001F600"))
    text = char * (size // len(char.encode()))
    return _splice(record, rng, json.dumps(text, ensure_ascii=False).encode(), field)


_WRONG_VALUES = (b"true", b"false", b"null", b"0", b"-1", b"1.5", b'""', b'" "', b"[]", b"[1]", b"{}",
                 b'{"a":null}', b'["\\ud800"]', b'"x"', b"18446744073709551616", b'"+15555555555"')


def _wrong_type(record, rng, max_bytes):
    field = rng.choice(sorted(record) + ["to", "sent_at", "payload", "cc", "attachments", "version", "tenant"])
    return _splice(record, rng, rng.choice(_WRONG_VALUES), field)


def _duplicate_key(record, rng, max_bytes):
    data = _dump(record, rng).decode()
    key = rng.choice(sorted(record))
    other = json.dumps(rng.choice((record[key], rng.choice(RECIPIENTS), 1)), ensure_ascii=False)
    if rng.random() < 0.3:  # nested, maybe keyed by a recipient
        name = json.dumps(rng.choice(("aps", "x", rng.choice(RECIPIENTS))))
        return _splice(record, rng, f"{{{name}:1,{name}:2}}".encode())
    return ("{" + json.dumps(key) + ":" + other + "," + data[1:]).encode()


def _bom(record, rng, max_bytes):
    return b"\xef\xbb\xbf" + _dump(record, rng)


def _crlf(record, rng, max_bytes):
    # What the reader hands on from a CRLF file: the line, its CR kept.
    return rng.choice((_dump(record, rng), _truncated(record, rng, max_bytes))) + b"\r"


def _nul(record, rng, max_bytes):
    if rng.random() < 0.5:
        return _splice(record, rng, b'"a\x00b"', rng.choice([None, *sorted(record)]))
    return _splice(record, rng, b'"a\\u0000b"', rng.choice([None, *ID_FIELDS, "to", "tenant"]))


def _id_value(record, rng, value: str) -> bytes:
    field = rng.choice([f for f in ("message_id", "dispatch_id", "campaign_id", "canvas_step_id", "user_id",
                                    "device_identity") if f in record] or ["message_id"])
    return _splice(record, rng, json.dumps(value, ensure_ascii=rng.random() < 0.5).encode(), field)


def _lookalike_slash(record, rng, max_bytes):
    return _id_value(record, rng, rng.choice(("a\u2215b", "a\uff0fb", "\u2215etc", "x\u29f8y", "a\u2044b")))


def _lookalike_dot(record, rng, max_bytes):
    return _id_value(record, rng, rng.choice(("\u2024\u2024", "\uff0e\uff0e", "a\u2024\u2024\u2215b", "\u2025")))


def _percent_encoding(record, rng, max_bytes):
    return _id_value(record, rng, rng.choice(("a%2Fb", "%2E%2E", "..%2Fetc", "%2e%2e%2f", "a%00b", "%")))


def _overlong_id(record, rng, max_bytes):
    return _id_value(record, rng, "x" * rng.choice((200, 201, 1024, 5000)))


def _int64_id(record, rng, max_bytes):
    field = rng.choice(("campaign_id", "user_id", "journey_id", "journey_node_id", "device_identity"))
    value = rng.choice((INT64_MAX, INT64_MAX + 1, -(2 ** 63) - 1, 2 ** 64, 10 ** 30))
    literal = str(value) if rng.random() < 0.7 else json.dumps(str(value))
    return _splice(record, rng, literal.encode(), field)


def _blank(record, rng, max_bytes):
    return rng.choice((b" ", b"\t", b"\r", b"  \t \r", b"\x0c", b"\xef\xbb\xbf", b"\x00", b""))


def _missing_sent_at(record, rng, max_bytes):
    record = dict(record)
    record.pop("sent_at", None)
    if rng.random() < 0.5:
        record.pop("batch_date", None)
    return _dump(record, rng)


def _recipient_as_key(record, rng, max_bytes):
    record = dict(record)
    record[rng.choice(RECIPIENTS)] = rng.choice(("hi", 1, {}))
    return _dump(record, rng)


MUTATIONS: dict[str, Callable[[dict, random.Random, int], bytes]] = {
    "valid": _valid, "truncated": _truncated, "invalid_utf8": _invalid_utf8, "lone_surrogate": _lone_surrogate,
    "huge_number": _huge_number, "non_finite": _non_finite, "deep_nesting": _deep_nesting,
    "long_string": _long_string, "wrong_type": _wrong_type, "duplicate_key": _duplicate_key, "bom": _bom,
    "crlf": _crlf, "nul": _nul, "lookalike_slash": _lookalike_slash, "lookalike_dot": _lookalike_dot,
    "percent_encoding": _percent_encoding, "overlong_id": _overlong_id, "int64_id": _int64_id,
    "blank": _blank, "missing_sent_at": _missing_sent_at, "recipient_as_key": _recipient_as_key,
}


def hostile_record(rng: random.Random, max_message_bytes: int, mutation: str | None = None) -> tuple[bytes, str]:
    """One record: a seed-shaped record of a random profile and channel, maybe mutated.
    The class name is "<mutation>:<profile>:<channel>"."""
    profile, channel = rng.choice(sorted(SEEDS))
    record = SEEDS[profile, channel](rng)
    tenant = rng.choice(TENANTS)
    if tenant is not None:
        record["tenant"] = tenant
    if mutation is None:  # about a third valid, the rest spread over the hostile classes
        mutation = "valid" if rng.random() < 0.3 else rng.choice(sorted(MUTATIONS))
    return MUTATIONS[mutation](record, rng, max_message_bytes), f"{mutation}:{profile}:{channel}"


def hostile_records(seed: int, count: int, max_message_bytes: int = 64 * 1024) -> Iterator[tuple[bytes, str]]:
    """`count` records, the same ones for the same seed: (raw bytes, class name).

    Every mutation class appears in the first len(MUTATIONS) records, whatever
    the seed. Long strings are sized around `max_message_bytes`, which should
    be the archiver's limit.
    """
    rng = random.Random(seed)
    names = sorted(MUTATIONS)
    for index in range(count):
        yield hostile_record(rng, max_message_bytes, names[index] if index < len(names) else None)


def hostile_inputs(max_message_bytes: int = 64 * 1024):
    """A hypothesis strategy of (raw bytes, class name): the generator above, driven
    by hypothesis' randomness, plus free-form bytes and JSON values."""
    from hypothesis import strategies as st

    json_values = st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
        | st.text(max_size=20),
        lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
        max_leaves=20)
    generated = st.builds(
        lambda rng, mutation: hostile_record(rng, max_message_bytes, mutation),
        st.randoms(use_true_random=False), st.sampled_from(sorted(MUTATIONS)))
    free_bytes = st.binary(max_size=300).map(lambda b: (b, "free:bytes"))
    free_field = st.builds(
        lambda rng, field, value: (_splice(SEEDS[("clevertap", "sms")](rng), rng,
                                           json.dumps(value).encode(), field), "free:field"),
        st.randoms(use_true_random=False), st.sampled_from(("payload", "body", "to", "campaign_id", "sent_at",
                                                           "message_id", "tenant", "extra")), json_values)
    return st.one_of(generated, generated, free_bytes, free_field)


# --- the invariants --------------------------------------------------------------------------------

def strict_loads(document: bytes) -> Any:
    """RFC 8259 and nothing more: no NaN/Infinity, no duplicate keys, UTF-8."""
    def constant(name):
        raise ValueError(f"{name} is not JSON")

    def pairs(items):
        if len({k for k, _ in items}) != len(items):
            raise ValueError("duplicate key")
        return dict(items)
    return json.loads(document.decode("utf-8"), parse_constant=constant, object_pairs_hook=pairs)


def check_one(archiver: Archiver, raw: bytes, source: str = "hostile:1") -> str:
    """Run one record through prepare (+ rejected) and assert the invariants; its status.

    Exactly one outcome; nothing but InvalidMessage raised; an archived object
    is strict JSON at a key of its profile's layout, at most 1024 bytes; a
    dead letter holds the input's exact bytes; no recipient in a reason.
    """
    try:
        result = archiver.prepare(raw, source)
    except InvalidMessage as error:
        outcome, dead = archiver.rejected(raw, error, source)
        assert outcome.status == INVALID and outcome.reason == error.reason
        assert dead.data == raw, "the dead letter is not the input's bytes"
        assert dead.input_sha256 == outcome.input_sha256 == hashlib.sha256(raw).hexdigest()
        assert outcome.input_bytes == len(raw)
        _no_recipient(outcome.reason)
        _no_recipient(outcome.field or "")
        json.loads(outcome.to_json())
        assert json.loads(dead.to_json())["input_sha256"] == outcome.input_sha256
        return INVALID
    if isinstance(result, Outcome):
        assert result.status in (SKIPPED, FAILED), result.status
        _no_recipient(result.reason or "")
        _no_recipient(result.error or "")
        return result.status
    assert isinstance(result, ArchiveRequest), type(result)
    assert KEY_PATTERNS[result.profile].fullmatch(result.key), result.key
    assert len(result.key.encode("utf-8")) <= MAX_KEY_BYTES
    document = strict_loads(get_codec(result.metadata.compression).decompress(result.data))
    assert isinstance(document, dict) and document["version"] == 1
    json.dumps(document, ensure_ascii=False, allow_nan=False).encode("utf-8")  # re-encodes
    assert result.metadata.sha256 == hashlib.sha256(result.data).hexdigest()
    return "ARCHIVED"


def _no_recipient(text: str) -> None:
    for value in RECIPIENTS + RECIPIENT_FRAGMENTS:
        assert value.lower() not in text.lower(), f"a recipient in {text!r}"
