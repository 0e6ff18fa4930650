"""What every output profile shares: the entry it builds and field helpers."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Iterable

from archive.envelope import (
    ENVELOPE_FIELDS, INT64_MAX, INT64_MIN, Envelope, InvalidMessage, derived_message_id,
)
from archive import keys

# Fields that route or identify a message but are never archived as content.
ROUTING_FIELDS = frozenset({
    "channel", "tenant", "version", "sent_at", "batch_date", "batch_id",
    "message_id", "dispatch_id", "user_id", "device_identity", "customer_identity",
})


@dataclass(frozen=True)
class ArchiveEntry:
    """One message, ready to encode: where it goes and what it says."""

    message_id: str          # the profile's message id (CleverTap message_id, Braze dispatch_id)
    channel: str             # the envelope channel (email, push, sms, whatsapp, mms)
    key_stem: str            # object key without ".json" and the compression suffix
    payload: dict[str, Any]  # the archived JSON object, in the seed's field order
    sent_at_millis: int

    # A frozen dataclass's own __init__ sets each field with object.__setattr__; one
    # update of the instance's dict does the same at a third of the cost (one per message).
    def __init__(self, message_id: str, channel: str, key_stem: str, payload: dict[str, Any], sent_at_millis: int):
        self.__dict__.update(message_id=message_id, channel=channel, key_stem=key_stem, payload=payload,
                             sent_at_millis=sent_at_millis)


@dataclass(frozen=True)
class BuildContext:
    """Everything outside the message that a profile may need. No clock: what
    is archived depends on the record (and its source's stamp) alone."""

    received_millis: int | None = None  # the source's stamp on the record; None for a file
    default_region: str | None = None


class Profile:
    """An output contract: key layout plus payload fields, per channel."""

    name: str
    default_compression: str
    channels: tuple[str, ...]
    # channel -> the payload's content fields in the seed's order
    content_fields: dict[str, tuple[str, ...]]
    # Payload fields the seed writes only when available ("may not be available",
    # "will only be available if ..."): one given as null is left out, as an
    # absent one is. Any other field given as null is archived as null; a
    # required one is INVALID (docs/envelope.md, "Null values").
    omitted_when_null: frozenset = frozenset()

    def build(self, envelope: Envelope, context: BuildContext) -> ArchiveEntry:
        raise NotImplementedError

    def check_channel(self, envelope: Envelope) -> None:
        if envelope.channel not in self.channels:
            raise InvalidMessage(
                f"channel {envelope.channel} is not archived by the {self.name} profile "
                f"(it archives {', '.join(self.channels)})", "channel")

    def check_no_unarchived_content(self, envelope: Envelope, archived: Iterable[str]) -> None:
        """Content the profile's payload has no field for would be lost: refuse it.

        `archived`: the payload's fields; `archived_fields` builds them once
        per channel, with the routing fields, so most records pass at a glance."""
        if isinstance(archived, frozenset) and archived.issuperset(envelope.fields):
            return  # every field is archived (or routes): nothing to look for
        archived = set(archived) | ROUTING_FIELDS
        lost = sorted(k for k, v in envelope.fields.items()
                      if v is not None and k in ENVELOPE_FIELDS and k not in archived)
        if lost:
            raise InvalidMessage(
                f"field(s) {', '.join(lost)} are not part of the {self.name} profile's "
                f"{envelope.channel} payload and would not be archived", lost[0])


def archived_fields(names: Iterable[str]) -> frozenset:
    """A payload's fields and the routing fields (never lost), for
    `Profile.check_no_unarchived_content`."""
    return frozenset(names) | ROUTING_FIELDS


def message_id(envelope: Envelope, preferred: str, other: str) -> str:
    """The message's id from `preferred` or `other`; derived when neither is given."""
    first, second = envelope.fields.get(preferred), envelope.fields.get(other)
    if first is not None and second is not None and first != second:
        raise InvalidMessage(f"{preferred} and {other} disagree", preferred)
    value = first if first is not None else second
    if value is None:
        return derived_message_id(envelope)
    return keys.segment(value, preferred if first is not None else other)


def required_string(envelope: Envelope, name: str, profile: str) -> str:
    value = envelope.fields.get(name)
    if value is None:
        raise InvalidMessage(f"{name} is required by the {profile} profile for {envelope.channel}", name)
    if not value.strip():
        raise InvalidMessage(f"{name} is empty", name)
    return value


def as_int(envelope: Envelope, name: str) -> int:
    """An integer id, given as a JSON integer or a string of digits, that fits a
    signed 64-bit integer (the seeds' ids are Java longs)."""
    value = envelope.fields.get(name)
    if type(value) is int or isinstance(value, int) and not isinstance(value, bool):
        number = value
    else:
        text = str(value).strip()
        if not _INTEGER.fullmatch(text):
            raise InvalidMessage(f"{name} must be an integer", name)
        number = int(text)
    if not INT64_MIN <= number <= INT64_MAX:
        raise InvalidMessage(f"{name} must fit a signed 64-bit integer", name)
    return number


def as_string(value: Any) -> str:
    return value if isinstance(value, str) else str(value)


_INTEGER = re.compile(r"-?[0-9]{1,19}")

_PLATFORMS = {
    "ios": "ios", "ios_push": "ios", "apns": "ios",
    "android": "android", "android_push": "android", "fcm": "android",
    "kindle": "kindle", "kindle_push": "kindle",
    "web": "web", "web_push": "web",
}


def push_platform(envelope: Envelope) -> str:
    """ios | android | kindle | web, from `platform` or a platform-named channel."""
    value = envelope.get("platform")
    if value is None:
        if envelope.platform_hint is None:
            raise InvalidMessage("platform is required for push", "platform")
        return envelope.platform_hint
    try:
        platform = _PLATFORMS[value.strip().lower()]
    except KeyError:
        raise InvalidMessage("platform is not one of iOS, Android, kindle_push, web_push", "platform") from None
    if envelope.platform_hint and envelope.platform_hint != platform:
        raise InvalidMessage("platform disagrees with the channel", "platform")
    return platform


def project(envelope: Envelope, names: Iterable[str], payload: dict[str, Any],
            computed: dict[str, Any] | None = None, omitted_when_null: frozenset = frozenset()) -> None:
    """Copy the named fields into the payload in order: a computed value where
    the profile formats one (a phone number, a platform name), else the input's
    value when its key is present, a null as null: the archived object is the
    one sent. A field of `omitted_when_null` is written only when not null, as
    the seed writes it only when available (`Profile.omitted_when_null`)."""
    fields = envelope.fields
    for name in names:
        if computed and name in computed:
            payload[name] = computed[name]
            continue
        value = fields.get(name, _ABSENT)
        if value is None:
            if name not in omitted_when_null:
                payload[name] = None
        elif value is not _ABSENT:
            payload[name] = value


_ABSENT = object()  # project: a key not in the record, unlike one given as null
