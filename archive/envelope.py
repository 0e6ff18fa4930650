"""The input envelope: one outbound message as it enters the archiver.

`decode` turns raw bytes (a JSON Lines line, a Kafka value, a Pub/Sub payload)
or an already-parsed mapping (a Parquet row) into an `Envelope`, or raises
`InvalidMessage` with a reason that names the field and never its value (the
value may be a recipient's address).

The envelope is the union of both seeds' payload fields plus routing and
identity fields; docs/envelope.md and archive/schemas/envelope.schema.json
describe it for users.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
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

_YYYYMMDD = re.compile(r"[0-9]{8}")
_FIELD_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,39}")

PAYLOAD_VERSION = 1
DEFAULT_MAX_MESSAGE_BYTES = 10 * 1024 * 1024

# Epoch values below this are seconds, at or above it milliseconds: 1e11 s is
# the year 5138 while 1e11 ms is March 1973, before any message we archive.
_MILLIS_THRESHOLD = 100_000_000_000


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

    @property
    def tenant(self) -> str | None:
        return self.fields.get("tenant")

    def has(self, name: str) -> bool:
        return name in self.fields

    def get(self, name: str, default: Any = None) -> Any:
        return self.fields.get(name, default)


def decode(raw: bytes | str | Mapping[str, Any],
           max_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> Envelope:
    """Parse and type-check one input record."""
    if isinstance(raw, Mapping):
        record = dict(raw)
        original = canonical_json(record)
    else:
        if isinstance(raw, str):
            try:  # surrogateescape gives back the bytes a str was decoded from
                original = raw.encode("utf-8", "surrogateescape")
            except UnicodeEncodeError:
                raise InvalidMessage("input holds an unpaired surrogate: not valid Unicode") from None
        else:
            original = bytes(raw)
        if len(original) > max_bytes:
            raise InvalidMessage(
                f"message of {len(original)} bytes exceeds the limit of {max_bytes} bytes")
        try:
            text = original.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidMessage(f"input is not valid UTF-8 (byte {exc.start})") from None
        try:
            record = json.loads(text, parse_constant=_reject_constant)
        except InvalidMessage:
            raise
        except ValueError as exc:
            raise InvalidMessage(f"malformed JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
        if not isinstance(record, dict):
            raise InvalidMessage(f"a message is a JSON object, not {_json_type(record)}")
        if "\\ud" in text or "\\uD" in text:
            _reject_lone_surrogates(record)
    if len(original) > max_bytes:
        raise InvalidMessage(
            f"message of {len(original)} bytes exceeds the limit of {max_bytes} bytes")
    channel, platform_hint = _channel(record)
    _check_types(record)
    if record.get("version") is not None and record["version"] != PAYLOAD_VERSION:
        raise InvalidMessage(f"version must be {PAYLOAD_VERSION} when given", "version")
    return Envelope(channel, platform_hint, record, original)


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


def _reject_lone_surrogates(record: Any) -> None:
    """JSON may escape half of a surrogate pair ("\\ud800"), which no UTF-8 can hold."""
    try:
        canonical_json(record)
    except UnicodeEncodeError:
        raise InvalidMessage("a string holds an unpaired surrogate escape: not valid Unicode") from None


def _reject_constant(name: str):
    # Python's json reads NaN and Infinity, which are not JSON and would be
    # written back as such: strict readers of the archive would choke on them.
    raise InvalidMessage(f"{name} is not a JSON value")


def canonical_channel(value: Any) -> str | None:
    """The channel a spelling stands for ("Push" -> "push"), or None if unknown."""
    if not isinstance(value, str):
        return None
    found = _CHANNEL_ALIASES.get(value.strip().lower())
    return found[0] if found else None


def _check_types(record: Mapping[str, Any]) -> None:
    unknown = sorted(k for k in record if k not in ENVELOPE_FIELDS)
    if unknown:
        # Only name-like keys are echoed: a key may itself be an address or number.
        named = [k for k in unknown if _FIELD_NAME.fullmatch(k)]
        shown = ", ".join(repr(k) for k in named[:5])
        hidden = len(unknown) - len(named[:5])
        more = f"{' and ' if shown else ''}{hidden} unnamed" if hidden else ""
        raise InvalidMessage(f"unknown field(s) {shown}{more}", named[0] if named else None)
    for name in _STRING_FIELDS:
        _expect(record, name, str, "a string")
    for name in _ID_FIELDS:
        _expect(record, name, (str, int), "a string or an integer")
    for name in _OBJECT_FIELDS:
        _expect(record, name, dict, "an object")
    for name in _STRING_LIST_FIELDS:
        if _expect(record, name, list, "an array of strings"):
            if not all(isinstance(v, str) for v in record[name]):
                raise InvalidMessage(f"{name} must be an array of strings", name)
    for name in _ADDRESS_LIST_FIELDS:
        if _expect(record, name, (list, str), "an array of strings or a string"):
            value = record[name]
            if isinstance(value, list) and not all(isinstance(v, str) for v in value):
                raise InvalidMessage(f"{name} must be an array of strings", name)
    if _expect(record, "attachments", list, "an array of objects"):
        for item in record["attachments"]:
            if not isinstance(item, dict):
                raise InvalidMessage("attachments must be an array of objects", "attachments")
            if not isinstance(item.get("file_name"), str) or not isinstance(item.get("bytes"), str):
                raise InvalidMessage(
                    "each attachment needs a string 'file_name' and string 'bytes'", "attachments")
    _expect(record, "sent_at", (int, float, str), "epoch seconds, epoch milliseconds or an ISO-8601 string")
    for name in ("batch_date", "batch_id"):
        if _expect(record, name, (str, int), "a date as yyyymmdd"):
            _batch_date(record[name], name)
    _expect(record, "version", int, "an integer")


def _expect(record: Mapping[str, Any], name: str, types, what: str) -> bool:
    """True when the field is present and not null; raises on a wrong type."""
    value = record.get(name)
    if value is None:
        return False
    # bool is an int subclass in Python but never a valid id or timestamp here.
    if isinstance(value, bool) or not isinstance(value, types):
        raise InvalidMessage(f"{name} must be {what}, not {_json_type(value)}", name)
    return True


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


def sent_at_millis(envelope: Envelope, now_millis: int) -> int:
    """The send time in epoch milliseconds; the archive time when not given."""
    value = envelope.get("sent_at")
    if value is None:
        return now_millis
    if isinstance(value, str):
        text = value.strip()
        if re.fullmatch(r"\d+(\.\d+)?", text):
            value = float(text)
        else:
            try:
                parsed = _dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
            except ValueError:
                raise InvalidMessage("sent_at is not an ISO-8601 time or an epoch number", "sent_at") from None
            if parsed.tzinfo is None:
                parsed = parsed.replace(tzinfo=_dt.timezone.utc)
            value = parsed.timestamp() * 1000
            if value < 0:
                raise InvalidMessage("sent_at must not be before 1970", "sent_at")
            return _round_millis(value)
    if value != value or value in (float("inf"), float("-inf")):
        raise InvalidMessage("sent_at is not a finite number", "sent_at")
    if value < 0:
        raise InvalidMessage("sent_at must not be negative", "sent_at")
    millis = value if value >= _MILLIS_THRESHOLD else value * 1000
    if millis >= 253402300800000:  # 10000-01-01
        raise InvalidMessage("sent_at is out of range", "sent_at")
    return _round_millis(millis)


def _round_millis(millis: float) -> int:
    return int(millis) if float(millis).is_integer() else int(millis + 0.5)


def _batch_date(value: str | int, name: str) -> str:
    text = str(value).strip()
    try:
        if not _YYYYMMDD.fullmatch(text):
            raise ValueError
        _dt.datetime.strptime(text, "%Y%m%d")
    except ValueError:
        raise InvalidMessage(f"{name} must be a date as yyyymmdd", name) from None
    return text


def year_month(envelope: Envelope, sent_millis: int) -> str:
    """yyyymm of the batch date (yyyymmdd) when given, else of the send time, in UTC."""
    for name in ("batch_date", "batch_id"):
        if envelope.get(name) is not None:
            return _batch_date(envelope.get(name), name)[:6]
    moment = _dt.datetime.fromtimestamp(sent_millis / 1000, tz=_dt.timezone.utc)
    return f"{moment.year:04d}{moment.month:02d}"
