"""The input envelope: one outbound message as it enters the archiver.

`decode` turns raw bytes (a JSON Lines line, a Kafka value, a Pub/Sub payload)
or an already-parsed mapping (a Parquet row) into an `Envelope`, or raises
`InvalidMessage` with a reason that names the field and never its value (the
value may be a recipient's address). Nothing else ever leaves it:

    bytes --size, BOM, UTF-8--> text --parse_json--> record --_check_values, _check_types--> Envelope
    mapping (a Parquet row) -----------------------> record --_check_values, _check_types--> Envelope

(A record from text whose every value is plainly fine, most of them, passes
both checks in one glance, `_plain`; any other gets both in full.)

What every record must be, beyond its fields' types (docs/envelope.md):
  - strict JSON (RFC 8259): no NaN/Infinity, no number beyond a 64-bit float
    (1e400), no number of more than MAX_NUMBER_DIGITS digits, no key twice
    in one object, no unpaired surrogate escape ("\ud800"), no BOM;
  - at most MAX_NESTING_DEPTH levels deep, the record itself being level 1;
  - not empty and not blank (only whitespace).

The envelope is the union of both seeds' payload fields plus routing and
identity fields; docs/envelope.md and archive/schemas/envelope.schema.json
describe it for users.
"""

from __future__ import annotations

import datetime as _dt
import difflib
import functools
import hashlib
import json
import math
import re
from dataclasses import dataclass
from typing import Any, Mapping

CHANNELS = ("email", "push", "sms", "whatsapp", "mms")

# Spellings found in the seeds and in the wild, lower-cased. A platform-named
# channel ("android_push") also says which platform the push went to.
_CHANNEL_ALIASES = {
    "email": ("email", None),
    "e-mail": ("email", None),
    "push": ("push", None),
    "android_push": ("push", "android"),
    "ios_push": ("push", "ios"),
    "kindle_push": ("push", "kindle"),
    "web_push": ("push", "web"),
    "sms": ("sms", None),
    "whatsapp": ("whatsapp", None),
    "mms": ("mms", None),
}

_STRING_FIELDS = (
    "to", "subject", "from_name", "from_address", "html_body", "plaintext_body",
    "amp_body", "platform", "app_id", "body", "provider", "subscription_group",
    "campaign_name", "journey_name", "canvas_id", "canvas_name", "canvas_step_id",
    "canvas_step_name", "canvas_variation_id", "message_variation_id",
    "external_id", "message_id", "dispatch_id", "tenant",
)
_ID_FIELDS = (  # string or integer
    "user_id", "device_identity", "customer_identity", "campaign_id",
    "journey_id", "journey_node_id",
)
_OBJECT_FIELDS = ("headers", "extras", "payload")
_STRING_LIST_FIELDS = ("media_urls",)
_ADDRESS_LIST_FIELDS = ("cc", "bcc")  # a list of addresses, or one string
_OTHER_FIELDS = ("channel", "version", "attachments", "sent_at", "batch_date", "batch_id")

ENVELOPE_FIELDS = frozenset(
    _STRING_FIELDS + _ID_FIELDS + _OBJECT_FIELDS + _STRING_LIST_FIELDS
    + _ADDRESS_LIST_FIELDS + _OTHER_FIELDS
)
_FIELD_LIST = sorted(ENVELOPE_FIELDS)

_YYYYMMDD = re.compile(r"[0-9]{8}")
_EPOCH_TEXT = re.compile(r"[0-9]+(\.[0-9]+)?")
_FIELD_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,39}")

PAYLOAD_VERSION = 1
DEFAULT_MAX_MESSAGE_BYTES = 10 * 1024 * 1024

# The record is level 1, its payload object level 2. Seed records need 4
# (record > payload > aps > alert) and real push payloads rarely pass 8; 32 is
# generous and far below Python's recursion limit (~1000), which the JSON
# reader and writer here, and many readers of the archive, run into.
MAX_NESTING_DEPTH = 32
# Longer numbers are refused (an integer's digits, another number literal's
# characters): 100 holds any 64-bit value and any float's shortest repr many
# times over; Python refuses to convert integers of more than 4300 digits.
MAX_NUMBER_DIGITS = 100
_INTEGER_BOUND = 10 ** MAX_NUMBER_DIGITS
INT64_MIN, INT64_MAX = -(2 ** 63), 2 ** 63 - 1
_BOM = b"\xef\xbb\xbf"
_SURROGATE = re.compile("[\ud800-\udfff]")
_SURROGATE_ESCAPE = re.compile(r"\\u[dD]")  # "\ud" or "\uD": one pass, not two

# Epoch values below this are seconds, at or above it milliseconds: 1e11 s is
# the year 5138 while 1e11 ms is March 1973, before any message we archive.
_MILLIS_THRESHOLD = 100_000_000_000
_YEAR_10000_MILLIS = 253402300800000
_INFINITIES = (float("inf"), float("-inf"))
_DAY_MILLIS = 86_400_000
_EPOCH_ORDINAL = _dt.date(1970, 1, 1).toordinal()


class InvalidMessage(ValueError):
    """Bad input: the message cannot be archived as given.

    `reason` is safe to log and to put in an outcome: it names fields, never
    their values.
    """

    def __init__(self, reason: str, field: str | None = None):
        super().__init__(reason)
        self.reason = reason
        self.field = field


@dataclass(frozen=True)
class Envelope:
    """A decoded, type-checked outbound message."""

    channel: str                 # one of CHANNELS
    platform_hint: str | None    # from a platform-named channel ("android_push")
    fields: Mapping[str, Any]    # the record as given, `channel` included
    original: bytes              # the input exactly as received

    # A frozen dataclass's own __init__ sets each field with object.__setattr__; one
    # update of the instance's dict does the same at a third of the cost (one per message).
    def __init__(self, channel: str, platform_hint: str | None, fields: Mapping[str, Any], original: bytes):
        self.__dict__.update(channel=channel, platform_hint=platform_hint, fields=fields, original=original)

    @property
    def tenant(self) -> str | None:
        return self.fields.get("tenant")

    def has(self, name: str) -> bool:
        return name in self.fields

    def get(self, name: str, default: Any = None) -> Any:
        return self.fields.get(name, default)


def decode(raw: bytes | str | Mapping[str, Any] | None,
           max_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> Envelope:
    """Parse and type-check one input record."""
    plain = False  # see _plain
    if type(raw) is not bytes and isinstance(raw, Mapping):  # bytes first: a Mapping check is dear
        record = dict(raw)
        # A mapping was never JSON text: any value may be unfit for it.
        _check_values(record, surrogates=True, check_keys=True)
        original = canonical_json(record)
    else:
        if raw is None:  # a Kafka tombstone, a Pub/Sub message without data
            raise InvalidMessage("the message has no value (null)")
        if isinstance(raw, str):
            try:  # surrogateescape gives back the bytes a str was decoded from
                original = raw.encode("utf-8", "surrogateescape")
            except UnicodeEncodeError:
                raise InvalidMessage("input holds an unpaired surrogate: not valid Unicode") from None
        elif isinstance(raw, (bytes, bytearray, memoryview)):
            original = bytes(raw)
        else:
            raise InvalidMessage(f"a message is bytes, text or a mapping, not {type(raw).__name__}")
        if len(original) > max_bytes:
            raise InvalidMessage(
                f"message of {len(original)} bytes exceeds the limit of {max_bytes} bytes")
        if original.startswith(_BOM):
            raise InvalidMessage(
                "input starts with a UTF-8 byte order mark (BOM), which JSON text must not (RFC 8259 8.1)")
        try:
            text = original.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidMessage(f"input is not valid UTF-8 (byte {exc.start})") from None
        record = parse_json(text)
        if not isinstance(record, dict):
            raise InvalidMessage(f"a message is a JSON object, not {_json_type(record)}")
        # Only a \u escape can put a surrogate in text decoded from UTF-8.
        surrogates = _SURROGATE_ESCAPE.search(text) is not None
        plain = type(record) is dict and _plain(record, surrogates)
        if not plain:
            _check_values(record, surrogates=surrogates, check_keys=False)
    if len(original) > max_bytes:
        raise InvalidMessage(
            f"message of {len(original)} bytes exceeds the limit of {max_bytes} bytes")
    channel, platform_hint = _channel(record)
    if not plain:
        _check_types(record)
    if record.get("version") is not None and record["version"] != PAYLOAD_VERSION:
        raise InvalidMessage(f"version must be {PAYLOAD_VERSION} when given", "version")
    return Envelope(channel, platform_hint, record, original)


class _TooLong:
    """Stands for a number literal over MAX_NUMBER_DIGITS: _check_values names its field."""

    __slots__ = ()


_TOO_LONG = _TooLong()


class _DuplicateKeys(dict):
    """An object that had a key twice: _check_values names its field."""

    __slots__ = ("duplicate",)


def _object(pairs: list) -> dict:
    record = dict(pairs)
    if len(record) == len(pairs):
        return record
    seen = set()
    for key, _ in pairs:
        if key in seen:
            break
        seen.add(key)
    marked = _DuplicateKeys(record)
    marked.duplicate = key
    return marked


def _int(literal: str):
    return _TOO_LONG if len(literal.lstrip("-")) > MAX_NUMBER_DIGITS else int(literal)


def _float(literal: str):
    return _TOO_LONG if len(literal) > MAX_NUMBER_DIGITS else float(literal)


def parse_json(text: str) -> Any:
    """JSON text as Python values; raises InvalidMessage and nothing else.

    Too long numbers and objects with a duplicate key come back marked, and
    numbers beyond a float as inf, for `_check_values`, which knows the field
    they sit in.
    """
    if not text:
        raise InvalidMessage("empty input: no JSON value")
    try:
        try:
            # Integers parse natively (the walk bounds them): a parse_int hook
            # would cost a call per integer.
            return _loads(text, _HOOKS)
        except ValueError as exc:
            if isinstance(exc, json.JSONDecodeError):
                raise
            # Python refuses integers of more than 4300 digits: mark them instead.
            return _loads(text, _LONG_INT_HOOKS)
    except InvalidMessage:
        raise
    except RecursionError:  # the C parser recurses once per level
        raise InvalidMessage(f"the record nests deeper than {MAX_NESTING_DEPTH} levels") from None
    except json.JSONDecodeError as exc:
        if not text.strip():
            raise InvalidMessage("blank line: only whitespace, no JSON value") from None
        raise InvalidMessage(f"malformed JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except (ValueError, TypeError, MemoryError) as exc:
        raise InvalidMessage(f"malformed JSON: {type(exc).__name__}") from None


def _loads(text: str, hooks: dict) -> Any:
    """json.loads(text, **hooks), with the hooks' decoder built once (as
    json.loads builds its default one: a decoder keeps nothing between calls);
    json.loads itself for anything but text without a BOM, which it refuses."""
    if type(text) is str and not text.startswith("\ufeff"):
        return _DECODERS[id(hooks)].decode(text)
    return json.loads(text, **hooks)


def _check_values(record: dict, surrogates: bool, check_keys: bool) -> None:
    """Every value is one JSON holds, and reads back as it was, within the nesting limit.

    `surrogates`: look for unpaired surrogates (text without a \\u escape has
    none). `check_keys`: keys may not be strings (a mapping; JSON text's are).
    Top-level strings, integers, finite floats, null and booleans, most of a
    record, are checked inline.
    """
    if type(record) is _DuplicateKeys:
        raise InvalidMessage(f"duplicate key{_shown(record.duplicate)} in the record", _field(record.duplicate))
    for key, value in record.items():
        if check_keys and type(key) is not str:
            raise InvalidMessage("a field name is not a string")
        if surrogates and _SURROGATE.search(key):
            raise InvalidMessage("a field name holds an unpaired surrogate escape: not valid Unicode")
        kind = type(value)
        if kind is str and not surrogates:
            continue
        if kind is int and -_INTEGER_BOUND < value < _INTEGER_BOUND:
            continue
        if kind is float and math.isfinite(value) or value is None or kind is bool:
            continue
        problem = _value_problem(value, surrogates, check_keys)
        if problem:
            field = _field(key)
            raise InvalidMessage(f"{field or 'a field'} {problem}", field)


def _plain(record: dict, surrogates: bool) -> bool:
    """Whether both _check_values (of JSON text) and _check_types pass the
    record at a glance: every field known, every value of the exact type its
    field takes (a dict one that _value_problem passes) and in range. One
    pass instead of two for most records; any other record is checked in
    full, which says what is wrong, and where, as it always has. (A known
    field's name holds no surrogate.)"""
    for name, value in record.items():
        kind = type(value)
        if kind is str:
            if surrogates and _SURROGATE.search(value):
                return False
            if name in _ANY_STRING_FIELDS or name in _BATCH_FIELDS and _is_yyyymmdd(value.strip()):
                continue
        elif kind is int:
            bounds = _INT_BOUNDS.get(name)
            if bounds is not None and bounds[0] <= value <= bounds[1] \
                    or name in _BATCH_FIELDS and _is_yyyymmdd(str(value)):
                continue
        elif value is None:
            if name in ENVELOPE_FIELDS:
                continue
        elif kind is float:
            if name == "sent_at" and math.isfinite(value):
                continue
        elif kind is dict:
            if name in _OBJECT_FIELD_SET and _value_problem(value, surrogates, False) is None:
                continue
        return False
    return True


def _value_problem(value: Any, surrogates: bool, check_keys: bool) -> str | None:
    """What makes a value unfit for strict JSON, or None. Walks iteratively: a
    mapping may nest deeper than Python's stack."""
    if not isinstance(value, (dict, list, tuple)):
        return _scalar_problem(value, surrogates)
    stack = [(value, 2)]  # the record is level 1
    while stack:
        container, depth = stack.pop()
        if depth > MAX_NESTING_DEPTH:
            return f"nests deeper than {MAX_NESTING_DEPTH} levels"
        if isinstance(container, dict):
            if type(container) is _DuplicateKeys:
                # Nested keys are content, never named: one may be a recipient.
                return "holds an object with a duplicate key"
            if check_keys or surrogates:
                for key in container:
                    if type(key) is not str:
                        return "holds an object key that is not a string"
                    if surrogates and _SURROGATE.search(key):
                        return "holds an unpaired surrogate escape: not valid Unicode"
            items = container.values()
        else:
            items = container
        for item in items:
            kind = type(item)
            if kind is str and not surrogates:
                continue
            if kind is int and -_INTEGER_BOUND < item < _INTEGER_BOUND:
                continue
            if isinstance(item, (dict, list, tuple)):
                stack.append((item, depth + 1))
                continue
            problem = _scalar_problem(item, surrogates)
            if problem:
                return problem
    return None


def _scalar_problem(value: Any, surrogates: bool) -> str | None:
    if isinstance(value, str):
        if surrogates and _SURROGATE.search(value):
            return "holds an unpaired surrogate escape: not valid Unicode"
        return None
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int):
        if -_INTEGER_BOUND < value < _INTEGER_BOUND:
            return None
        return f"holds a number of more than {MAX_NUMBER_DIGITS} digits"
    if isinstance(value, float):
        if math.isfinite(value):
            return None
        return "holds a number beyond the range of a 64-bit float (or NaN): not JSON"
    if type(value) is _TooLong:
        return f"holds a number of more than {MAX_NUMBER_DIGITS} digits"
    return f"holds {type(value).__name__}, which is not a JSON value"


def _field(key: Any) -> str | None:
    """The key, when a reason may name it: an envelope field, or a near miss of
    one ("To", "campaignId"). Any other key may itself be data, even a recipient
    (a map keyed by address or push token), so it is never echoed."""
    if key in ENVELOPE_FIELDS or _near_miss(key):
        return key
    return None


def _near_miss(key: Any) -> str | None:
    """The envelope field a name-like key is probably a misspelling of."""
    if not isinstance(key, str) or not _FIELD_NAME.fullmatch(key):
        return None
    found = difflib.get_close_matches(key.lower(), _FIELD_LIST, n=1, cutoff=0.8)
    return found[0] if found else None


def _shown(key: Any) -> str:
    return f" {key!r}" if _field(key) else ""


def _channel(record: Mapping[str, Any]) -> tuple[str, str | None]:
    if "channel" not in record:
        raise InvalidMessage("channel is missing", "channel")
    value = record["channel"]
    if not isinstance(value, str):
        raise InvalidMessage(f"channel must be a string, not {_json_type(value)}", "channel")
    try:
        return _CHANNEL_ALIASES[value.strip().lower()]
    except KeyError:
        raise InvalidMessage(
            "unknown channel (expected one of email, push, sms, whatsapp, mms)", "channel") from None


def _reject_constant(name: str):
    # Python's json reads NaN and Infinity, which are not JSON and would be
    # written back as such: strict readers of the archive would choke on them.
    raise InvalidMessage(f"{name} is not a JSON value")


_HOOKS = {"parse_constant": _reject_constant, "parse_float": _float, "object_pairs_hook": _object}
_LONG_INT_HOOKS = {**_HOOKS, "parse_int": _int}
_DECODERS = {id(hooks): json.JSONDecoder(**hooks) for hooks in (_HOOKS, _LONG_INT_HOOKS)}


def canonical_channel(value: Any) -> str | None:
    """The channel a spelling stands for ("Push" -> "push"), or None if unknown."""
    if not isinstance(value, str):
        return None
    found = _CHANNEL_ALIASES.get(value.strip().lower())
    return found[0] if found else None


def _check_types(record: Mapping[str, Any]) -> None:
    # Most records pass on each value's exact type alone, in one pass; any
    # other value (or an unknown field) is left to the full check, which
    # decides, and names the field, exactly as it would have.
    for name, value in record.items():
        plain = _PLAIN_TYPES.get(name)
        if plain is None:
            if name in _UNCHECKED_FIELDS:
                continue
            break  # unknown
        kind = type(value)
        if kind in plain or value is None:
            continue
        if kind is int and name in _ID_FIELD_SET and INT64_MIN <= value <= INT64_MAX:
            continue
        if kind is list and name in _LIST_OF_STRINGS_FIELDS and all(type(v) is str for v in value):
            continue
        if name in _BATCH_FIELDS and (kind is str or kind is int) and _is_yyyymmdd(str(value).strip()):
            continue
        break
    else:
        return
    _check_types_fully(record)


def _check_types_fully(record: Mapping[str, Any]) -> None:
    unknown = sorted(k for k in record if k not in ENVELOPE_FIELDS)
    if unknown:
        named = [k for k in unknown if _near_miss(k)]
        shown = ", ".join(f"{k!r} (did you mean {_near_miss(k)!r}?)" for k in named[:5])
        hidden = len(unknown) - len(named[:5])
        more = f"{' and ' if shown else ''}{hidden} unnamed" if hidden else ""
        raise InvalidMessage(f"unknown field(s) {shown}{more}", named[0] if named else None)
    # Only the fields present are checked (a record has a dozen of the forty),
    # in one fixed order, so a record with several wrong fields names the same one.
    for name in sorted(_TYPE_CHECKS.keys() & record.keys(), key=_TYPE_ORDER.__getitem__):
        value = record[name]
        if value is not None:
            _TYPE_CHECKS[name](name, value)


def _require(name: str, value: Any, types, what: str) -> None:
    # bool is an int subclass in Python but never a valid id or timestamp here.
    if isinstance(value, bool) or not isinstance(value, types):
        raise InvalidMessage(f"{name} must be {what}, not {_json_type(value)}", name)


def _check_string(name: str, value: Any) -> None:
    _require(name, value, str, "a string")


def _check_id(name: str, value: Any) -> None:
    _require(name, value, (str, int), "a string or an integer")
    if isinstance(value, int) and not INT64_MIN <= value <= INT64_MAX:
        raise InvalidMessage(f"{name} must fit a signed 64-bit integer", name)


def _check_object(name: str, value: Any) -> None:
    _require(name, value, dict, "an object")


def _check_string_list(name: str, value: Any) -> None:
    _require(name, value, list, "an array of strings")
    if not all(isinstance(v, str) for v in value):
        raise InvalidMessage(f"{name} must be an array of strings", name)


def _check_address_list(name: str, value: Any) -> None:
    _require(name, value, (list, str), "an array of strings or a string")
    if isinstance(value, list) and not all(isinstance(v, str) for v in value):
        raise InvalidMessage(f"{name} must be an array of strings", name)


def _check_attachments(name: str, value: Any) -> None:
    _require(name, value, list, "an array of objects")
    for item in value:
        if not isinstance(item, dict):
            raise InvalidMessage("attachments must be an array of objects", "attachments")
        if not isinstance(item.get("file_name"), str) or not isinstance(item.get("bytes"), str):
            raise InvalidMessage("each attachment needs a string 'file_name' and string 'bytes'", "attachments")


def _check_sent_at(name: str, value: Any) -> None:
    _require(name, value, (int, float, str), "epoch seconds, epoch milliseconds or an ISO-8601 string")


def _check_batch_date(name: str, value: Any) -> None:
    _require(name, value, (str, int), "a date as yyyymmdd")
    _batch_date(value, name)


def _check_version(name: str, value: Any) -> None:
    _require(name, value, int, "an integer")


_TYPE_CHECKS = {
    **{name: _check_string for name in _STRING_FIELDS},
    **{name: _check_id for name in _ID_FIELDS},
    **{name: _check_object for name in _OBJECT_FIELDS},
    **{name: _check_string_list for name in _STRING_LIST_FIELDS},
    **{name: _check_address_list for name in _ADDRESS_LIST_FIELDS},
    "attachments": _check_attachments, "sent_at": _check_sent_at,
    "batch_date": _check_batch_date, "batch_id": _check_batch_date, "version": _check_version,
}
_TYPE_ORDER = {name: index for index, name in enumerate(_TYPE_CHECKS)}
# The exact types each check accepts without looking further (bool, an int
# subclass, is never one); anything else, or a field missing here, is left to
# _check_types_fully.
_PLAIN_TYPES = {
    **{name: (str,) for name in _STRING_FIELDS},
    **{name: (str,) for name in _ID_FIELDS},          # and an int that fits 64 bits
    **{name: (dict,) for name in _OBJECT_FIELDS},
    **{name: () for name in _STRING_LIST_FIELDS},     # a list of str
    **{name: (str,) for name in _ADDRESS_LIST_FIELDS},  # or a list of str
    "attachments": (), "sent_at": (int, float, str),
    "batch_date": (), "batch_id": (), "version": (int,),  # yyyymmdd as str or int
}
_UNCHECKED_FIELDS = ENVELOPE_FIELDS - _TYPE_CHECKS.keys()  # channel: _channel checked it
_ID_FIELD_SET = frozenset(_ID_FIELDS)
_LIST_OF_STRINGS_FIELDS = frozenset(_STRING_LIST_FIELDS + _ADDRESS_LIST_FIELDS)
_BATCH_FIELDS = frozenset({"batch_date", "batch_id"})
# For _plain: fields any string passes, and the integers each int field takes.
_ANY_STRING_FIELDS = frozenset(_STRING_FIELDS + _ID_FIELDS + _ADDRESS_LIST_FIELDS + ("sent_at", "channel"))
_INT_BOUNDS = {**{name: (INT64_MIN, INT64_MAX) for name in _ID_FIELDS},
               "sent_at": (1 - _INTEGER_BOUND, _INTEGER_BOUND - 1), "version": (1 - _INTEGER_BOUND, _INTEGER_BOUND - 1)}
_OBJECT_FIELD_SET = frozenset(_OBJECT_FIELDS)


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def canonical_json(record: Mapping[str, Any]) -> bytes:
    """Stable bytes for a record: the basis of derived message ids."""
    return json.dumps(record, sort_keys=True, ensure_ascii=False,
                      separators=(",", ":"), default=str).encode("utf-8")


def derived_message_id(envelope: Envelope) -> str:
    """A deterministic id for a message that came without one.

    Re-running a backfill derives the same id, so it rewrites the same object
    key instead of adding a duplicate.
    """
    return hashlib.sha256(canonical_json(envelope.fields)).hexdigest()


def sent_at_millis(envelope: Envelope, received_millis: int | None = None) -> int:
    """The send time in epoch milliseconds, from what the record itself carries.

    In order: `sent_at`; else the time the source stamped on the record
    (`received_millis`: a Kafka record's timestamp, a Pub/Sub publish time),
    which a replay sees again; else 00:00 UTC of the batch date (`batch_date`,
    then `batch_id`). None of these: InvalidMessage. The archive's own clock
    never stands in, so a replay writes the same bytes to the same key. A stamp
    outside 1970..9999 is no stamp (Kafka's -1, Beam's minimum timestamp).
    """
    value = envelope.fields.get("sent_at")
    if type(value) is int:  # the usual case, in short: the checks below that an int can fail
        if value < 0:
            raise InvalidMessage("sent_at must not be negative", "sent_at")
        millis = value if value >= _MILLIS_THRESHOLD else value * 1000
        if millis >= _YEAR_10000_MILLIS:
            raise InvalidMessage("sent_at is out of range", "sent_at")
        return millis
    if value is None:
        if received_millis is not None and 0 <= received_millis < _YEAR_10000_MILLIS:
            return int(received_millis)
        for name in ("batch_date", "batch_id"):
            if envelope.get(name) is not None:
                text = _batch_date(envelope.get(name), name)
                day = _dt.datetime(int(text[:4]), int(text[4:6]), int(text[6:]), tzinfo=_dt.timezone.utc)
                return int(day.timestamp()) * 1000
        raise InvalidMessage(
            "sent_at is missing, and the record has no source timestamp or batch date to stand for it",
            "sent_at")
    if isinstance(value, str):
        text = value.strip()
        if _EPOCH_TEXT.fullmatch(text):
            value = float(text)
        else:
            try:
                parsed = _dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
                if parsed.tzinfo is None:
                    parsed = parsed.replace(tzinfo=_dt.timezone.utc)
                value = parsed.timestamp() * 1000
            except (ValueError, OverflowError):
                raise InvalidMessage("sent_at is not an ISO-8601 time or an epoch number", "sent_at") from None
            if value < 0:
                raise InvalidMessage("sent_at must not be before 1970", "sent_at")
            return _round_millis(value)
    if value != value or value in _INFINITIES:
        raise InvalidMessage("sent_at is not a finite number", "sent_at")
    if value < 0:
        raise InvalidMessage("sent_at must not be negative", "sent_at")
    millis = value if value >= _MILLIS_THRESHOLD else value * 1000
    if millis >= _YEAR_10000_MILLIS:
        raise InvalidMessage("sent_at is out of range", "sent_at")
    return millis if type(millis) is int else _round_millis(millis)


def _round_millis(millis: float) -> int:
    return int(millis) if float(millis).is_integer() else int(millis + 0.5)


def _batch_date(value: str | int, name: str) -> str:
    text = str(value).strip()
    if not _is_yyyymmdd(text):
        raise InvalidMessage(f"{name} must be a date as yyyymmdd", name)
    return text


@functools.lru_cache(maxsize=4096)  # a batch date repeats for every message of its batch
def _is_yyyymmdd(text: str) -> bool:
    """Whether strptime(text, "%Y%m%d") reads a date, for text of 8 ASCII digits
    and nothing else: year 0001..9999, its month and its day (strptime's own
    regex splits 8 digits 4 + 2 + 2 only), a twelfth of its cost."""
    if not _YYYYMMDD.fullmatch(text):
        return False
    try:
        _dt.date(int(text[:4]), int(text[4:6]), int(text[6:]))
    except ValueError:
        return False
    return True


def year_month(envelope: Envelope, sent_millis: int) -> str:
    """yyyymm of the batch date (yyyymmdd) when given, else of the send time, in UTC."""
    for name in ("batch_date", "batch_id"):
        value = envelope.fields.get(name)
        if value is not None:
            return _batch_date(value, name)[:6]
    if type(sent_millis) is int and 0 <= sent_millis < _YEAR_10000_MILLIS:
        # the day of fromtimestamp(sent_millis / 1000, utc), in integers: a
        # millisecond is far wider than the float's error, so no day differs
        return _year_month_of_day(sent_millis // _DAY_MILLIS)
    moment = _dt.datetime.fromtimestamp(sent_millis / 1000, tz=_dt.timezone.utc)
    return f"{moment.year:04d}{moment.month:02d}"


@functools.lru_cache(maxsize=4096)  # messages come in runs of a few days
def _year_month_of_day(day: int) -> str:
    """yyyymm of the day `day` days after 1970-01-01."""
    moment = _dt.date.fromordinal(_EPOCH_ORDINAL + day)
    return f"{moment.year:04d}{moment.month:02d}"
