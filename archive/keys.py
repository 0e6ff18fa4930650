"""Object-key segments: ids that are safe to place between two slashes.

An id from the input becomes part of an object key. One that could escape the
layout ("../"), add a level ("a/b"), or break a store or a URL (NUL, control
characters, '?', '#', '%') is bad input, not something to escape silently:
the key of a message must be predictable from the message.
"""

from __future__ import annotations

import datetime as _dt
import re

from archive.envelope import InvalidMessage

MAX_SEGMENT_LENGTH = 200
MAX_KEY_BYTES = 1024  # S3's limit on a whole key (GCS's too); encoding.object_key holds it
_SAFE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.~=+@,:-]*")


def segment(value: object, field: str) -> str:
    """The id as a key segment; InvalidMessage when it is not a safe one."""
    if value is None:
        raise InvalidMessage(f"{field} is missing", field)
    text = str(value)
    if not text:
        raise InvalidMessage(f"{field} is empty", field)
    if len(text) > MAX_SEGMENT_LENGTH:
        raise InvalidMessage(f"{field} is longer than {MAX_SEGMENT_LENGTH} characters", field)
    if text.isascii() and text.isdigit():  # an integer id: safe, and cheaper to see so than with _SAFE
        return text
    if not _SAFE.fullmatch(text):
        raise InvalidMessage(
            f"{field} may hold only letters, digits and _ . ~ = + @ , : - "
            f"(and must not start with . or -): it would break the key layout", field)
    return text


def join(*segments: str) -> str:
    return "/".join(segments)


# --- key templates -----------------------------------------------------------------------
#
#     "archive/{tenant}/{channel}/{yyyy}/{mm}/{dd}/{recipient_md5}/{message_id}"
#         ──KeyTemplate(text)──> validated on load (TemplateError names what is wrong)
#     KeyValues of one message ──render──> key stem (".json" and the codec's suffix follow)
#     key ──parse──> the values back (the audit index, `find`, `verify` read it)
#
# A value is inserted only where a whole field stands, and every value is one
# safe segment (`segment` above, or fixed-width digits), so no value can leave
# its segment or add one. The template itself is as strict as the presets:
# literal text is safe segment text, there are no empty, "." or ".." segments,
# and the first segment is literal, so a tenant's objects sit under one prefix
# that is neither the audit index's nor the manifests'.

# field -> (width when fixed, else None; what it is)
TEMPLATE_FIELDS = {
    "tenant": (None, "the tenant's name"),
    "profile": (None, "clevertap or braze"),
    "channel": (None, "email, push, sms, mms or whatsapp"),
    "channel_folder": (None, "the profile's channel folder (Email, Push, Sms, WhatsApp / email, push, sms)"),
    "yyyy": (4, "year of sent_at (UTC)"),
    "mm": (2, "month of sent_at (UTC)"),
    "dd": (2, "day of sent_at (UTC)"),
    "hh": (2, "hour of sent_at (UTC)"),
    "yyyymm": (6, "year and month of sent_at (UTC)"),
    "yyyymmdd": (8, "date of sent_at (UTC)"),
    "campaign_id": (None, "the preset key's campaign segment (braze: campaign, else canvas step, "
                          "else 'unassociated')"),
    "recipient_md5": (32, "the preset key's recipient digest"),
    "message_id": (None, "the profile's message id (clevertap message_id, braze dispatch_id)"),
}
# A dispatch id names one send to many people (Braze's own key pairs it with the
# recipient's digest), and finding or erasing one person reads the digest back from
# the key: every template holds both.
REQUIRED_TEMPLATE_FIELDS = ("message_id", "recipient_md5")
RESERVED_PREFIXES = frozenset({"archive_index", "archive_manifests", "archive_erasures", "sent_batches"})
_FIELD = re.compile(r"\{([^{}]*)\}")
_LITERAL = re.compile(r"[A-Za-z0-9_.~=+@,:-]*")


class TemplateError(ValueError):
    """A key template that cannot be used; the message says why (never a value)."""


class KeyTemplate:
    """A validated key layout of named fields (see TEMPLATE_FIELDS)."""

    def __init__(self, text: str):
        if not isinstance(text, str) or not text:
            raise TemplateError("a key template must be a non-empty string")
        self.text = text
        if text.startswith("/") or text.endswith("/"):
            raise TemplateError("a key template starts and ends with a segment, not '/'")
        if text.endswith(".json") or ".json." in text:
            raise TemplateError("a key template names the key without '.json' and the compression suffix")
        self._segments: list[list[tuple[str, str]]] = []  # per segment: ("lit", text) | ("field", name)
        seen: list[str] = []
        for number, raw in enumerate(text.split("/")):
            if raw in ("", ".", ".."):
                raise TemplateError(f"segment {number + 1} is {raw!r}: empty, '.' and '..' segments are not keys")
            parts: list[tuple[str, str]] = []
            position = 0
            for match in _FIELD.finditer(raw):
                if match.start() > position:
                    parts.append(("lit", raw[position:match.start()]))
                name = match.group(1)
                if name not in TEMPLATE_FIELDS:
                    raise TemplateError(f"unknown field {{{name}}} (known: "
                                        f"{', '.join('{' + f + '}' for f in TEMPLATE_FIELDS)})")
                parts.append(("field", name))
                seen.append(name)
                position = match.end()
            if position < len(raw):
                parts.append(("lit", raw[position:]))
            for kind, value in parts:
                if kind == "lit" and not _LITERAL.fullmatch(value):
                    raise TemplateError(
                        f"segment {number + 1} holds {value!r}: literal text may hold only letters, digits "
                        "and _ . ~ = + @ , : - (a brace, a space or a '%' would break the layout)")
            if parts[0][0] == "lit" and parts[0][1][:1] in (".", "-"):
                raise TemplateError(f"segment {number + 1} starts with '.' or '-'")
            variable = [v for k, v in parts if k == "field" and TEMPLATE_FIELDS[v][0] is None]
            if len(variable) > 1:
                raise TemplateError(
                    f"segment {number + 1} holds {{{variable[0]}}} and {{{variable[1]}}}: two fields of "
                    "any width in one segment could be read back two ways; give each its own segment")
            self._segments.append(parts)
        if self._segments[0] != [("lit", self._segments[0][0][1])] or len(self._segments[0]) != 1:
            raise TemplateError("the first segment must be literal text (the prefix all objects share)")
        self.prefix = self._segments[0][0][1]
        if self.prefix in RESERVED_PREFIXES:
            raise TemplateError(f"the prefix {self.prefix!r} is where the archive keeps its own files")
        for name in REQUIRED_TEMPLATE_FIELDS:
            if name not in seen:
                raise TemplateError(f"the template has no {{{name}}}: keys would not be unique per message "
                                    "(or a person's objects could not be found)")
        if "channel" not in seen and "channel_folder" not in seen:
            raise TemplateError("the template has no {channel} or {channel_folder}: the audit index "
                                "could not tell an object's channel from its key")
        repeated = sorted({name for name in seen if seen.count(name) > 1})
        if repeated:
            raise TemplateError(f"{{{repeated[0]}}} appears twice")
        self.fields = tuple(seen)
        self._pattern = re.compile("/".join("".join(
            re.escape(value) if kind == "lit" else f"(?P<{value}>{_value_pattern(value)})"
            for kind, value in parts) for parts in self._segments))

    def render(self, values: "KeyValues") -> str:
        """The key stem of one message."""
        out = []
        for parts in self._segments:
            out.append("".join(value if kind == "lit" else values.get(value) for kind, value in parts))
        return "/".join(out)

    def parse(self, stem: str) -> dict[str, str] | None:
        """The field values of a key stem this template made, else None."""
        match = self._pattern.fullmatch(stem)
        return match.groupdict() if match else None

    def __eq__(self, other):
        return isinstance(other, KeyTemplate) and other.text == self.text

    def __hash__(self):
        return hash(self.text)

    def __repr__(self):
        return f"KeyTemplate({self.text!r})"


def _value_pattern(name: str) -> str:
    width = TEMPLATE_FIELDS[name][0]
    if name == "recipient_md5":
        return "[0-9a-f]{32}"
    if width is not None:
        return f"[0-9]{{{width}}}"
    return "[A-Za-z0-9_][A-Za-z0-9_.~=+@,:-]*"


class KeyValues:
    """What a template may ask of one message, each value already a safe segment."""

    __slots__ = ("tenant", "profile", "channel", "channel_folder", "sent_at_millis", "campaign_id",
                 "recipient_md5", "message_id")

    def __init__(self, tenant: str, profile: str, channel: str, channel_folder: str, sent_at_millis: int,
                 campaign_id: str, recipient_md5: str, message_id: str):
        self.tenant, self.profile, self.channel, self.channel_folder = tenant, profile, channel, channel_folder
        self.sent_at_millis, self.campaign_id = sent_at_millis, campaign_id
        self.recipient_md5, self.message_id = recipient_md5, message_id

    def get(self, name: str) -> str:
        if name in ("yyyy", "mm", "dd", "hh", "yyyymm", "yyyymmdd"):
            moment = _dt.datetime.fromtimestamp(self.sent_at_millis / 1000, tz=_dt.timezone.utc)
            return {"yyyy": f"{moment.year:04d}", "mm": f"{moment.month:02d}", "dd": f"{moment.day:02d}",
                    "hh": f"{moment.hour:02d}", "yyyymm": f"{moment.year:04d}{moment.month:02d}",
                    "yyyymmdd": f"{moment.year:04d}{moment.month:02d}{moment.day:02d}"}[name]
        return segment(getattr(self, name), name)
