"""An archived email as an RFC 5322 message: the pipeline's .eml objects
(`--email_format eml|both`) and retrieval's exports.

    payload (either profile's email JSON) + its key and sha256 ──eml()──> bytes of a .eml
    bytes of a .eml ──eml_fields()──> what its archive headers hold (index rebuild)

    multipart/mixed                      (only when there are attachments)
    └─ multipart/alternative
       ├─ text/plain                     plaintext_body
       ├─ text/x-amp-html                amp_body (AMP for Email puts it before the HTML)
       └─ text/html                      html_body
    └─ attachment ...                    Braze's attachments: file_name and bytes (base64)

From, To, Cc, Subject and Date come from the payload (Date from sent_at:
milliseconds for CleverTap, seconds for Braze); Message-ID is derived from the
archive's message id, so the same object always gives the same message; the
archive's own headers (X-Archive-*) say where it came from. Bcc is kept as a
header too: this is the sender's archival copy, not a message to send. The
MIME boundaries are derived from the message's own content, so the same
payload always gives the same bytes (a replay rewrites an identical object). The
payload's own `headers` are added when they are well-formed and not one of
those above. A value with a line break is folded to one line, never allowed
to start another header.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import datetime as _dt
import email.policy
import email.utils
import re
from email.message import EmailMessage
from typing import Any, Mapping

_POLICY = email.policy.SMTP.clone(max_line_length=998)
_SET_HERE = {"from", "to", "cc", "bcc", "subject", "date", "message-id", "mime-version", "content-type",
             "content-transfer-encoding"}
_HEADER_NAME = re.compile(r"[!-9;-~]+")  # RFC 5322 field-name: printable ASCII but ':'
_LINE_BREAKS = re.compile(r"[\r\n\x00-\x08\x0b\x0c\x0e-\x1f\x7f]+")


def eml(payload: Mapping[str, Any], profile: str, key: str | None = None, sha256: str | None = None) -> bytes:
    message = EmailMessage(policy=_POLICY)
    sender = _one_line(payload.get("from_address"))
    message["From"] = email.utils.formataddr((_one_line(payload.get("from_name")), sender)) if sender else ""
    for header, field in (("To", "to"), ("Cc", "cc"), ("Bcc", "bcc")):
        addresses = _addresses(payload.get(field))
        if addresses:
            message[header] = ", ".join(addresses)
    message["Subject"] = _one_line(payload.get("subject"))
    sent = _sent_at(payload.get("sent_at"), profile)
    if sent is not None:
        message["Date"] = email.utils.format_datetime(sent)
    message_id = payload.get("message_id" if profile == "clevertap" else "dispatch_id")
    if message_id is not None:
        message["Message-ID"] = f"<{_id_part(str(message_id))}@{profile}.archive.invalid>"
    for name, value in (("X-Archive-Profile", profile), ("X-Archive-Key", key), ("X-Archive-Sha256", sha256),
                        ("X-Archive-Sent-At", payload.get("sent_at")),
                        ("X-Archive-Campaign-Id", payload.get("campaign_id")),
                        ("X-Archive-Canvas-Id", payload.get("canvas_id")),
                        ("X-Archive-Canvas-Step-Id", payload.get("canvas_step_id")),
                        ("X-Archive-Journey-Id", payload.get("journey_id")),
                        ("X-Archive-User-Id", payload.get("user_id")),
                        ("X-Archive-External-Id", payload.get("external_id"))):
        if value is not None:
            message[name] = _one_line(value)
    headers = payload.get("headers")
    if isinstance(headers, Mapping):
        for name, value in headers.items():
            if isinstance(name, str) and _HEADER_NAME.fullmatch(name) and name.lower() not in _SET_HERE \
                    and not name.lower().startswith("x-archive-") and value is not None:
                message[name] = _one_line(value)

    plain, amp, html = (payload.get(name) for name in ("plaintext_body", "amp_body", "html_body"))
    parts = [(text, subtype) for text, subtype in ((plain, "plain"), (amp, "x-amp-html"), (html, "html"))
             if isinstance(text, str)]
    if not parts:
        message.set_content("", subtype="plain", charset="utf-8")
    else:
        first, subtype = parts[0]
        message.set_content(first, subtype=subtype, charset="utf-8", cte="quoted-printable")
        if len(parts) > 1:
            message.make_alternative()
            for text, subtype in parts[1:]:
                message.add_alternative(text, subtype=subtype, charset="utf-8", cte="quoted-printable")
    attachments = payload.get("attachments")
    if isinstance(attachments, list):
        for index, attachment in enumerate(attachments):
            if not isinstance(attachment, Mapping):
                continue
            name = _one_line(attachment.get("file_name")) or f"attachment-{index + 1}"
            message.add_attachment(_attachment_bytes(attachment.get("bytes")), maintype="application",
                                   subtype="octet-stream", filename=name)
    if message.is_multipart():
        # The email package draws boundaries at random; one derived from the content
        # keeps the output a function of the payload (no text can hold it unknowingly:
        # it is a digest of that text).
        digest = hashlib.sha256(json.dumps([profile, key, sha256, payload], sort_keys=True, default=repr)
                                .encode("utf-8", "surrogatepass")).hexdigest()[:32]
        for number, part in enumerate(p for p in message.walk() if p.is_multipart()):
            part.set_boundary(f"=_archive_{digest}_{number}")
    return message.as_bytes(policy=_POLICY)


def eml_fields(data: bytes) -> dict[str, Any]:
    """What an archived .eml says of its message in the archive's own headers:
    sent_at (as the payload had it) and the ids the audit index keeps (campaign, canvas,
    canvas step, journey, user, external id), so a rebuild from .eml alone is the pipeline's row.
    ValueError when it is not one of ours."""
    message = email.message_from_bytes(data, policy=email.policy.default)
    profile = message.get("X-Archive-Profile")
    if profile not in ("clevertap", "braze"):
        raise ValueError("not an archived email: no X-Archive-Profile header")
    fields: dict[str, Any] = {}
    for header, name in (("X-Archive-Sent-At", "sent_at"), ("X-Archive-Campaign-Id", "campaign_id"),
                         ("X-Archive-Canvas-Id", "canvas_id"), ("X-Archive-Canvas-Step-Id", "canvas_step_id"),
                         ("X-Archive-Journey-Id", "journey_id"), ("X-Archive-User-Id", "user_id"),
                         ("X-Archive-External-Id", "external_id")):
        if message.get(header) is not None:
            fields[name] = str(message.get(header))
    if "sent_at" in fields:
        try:
            fields["sent_at"] = int(fields["sent_at"])
        except ValueError:
            raise ValueError("not an archived email: X-Archive-Sent-At is not a number") from None
    return fields


def _one_line(value: Any) -> str:
    if value is None:
        return ""
    text = value if isinstance(value, str) else str(value)
    return _LINE_BREAKS.sub(" ", text).strip()


def _addresses(value: Any) -> list[str]:
    if value is None:
        return []
    values = value if isinstance(value, list) else [value]
    return [text for text in (_one_line(v) for v in values if isinstance(v, str)) if text]


def _id_part(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.~=+,:-]", "_", text)[:200] or "_"


def _sent_at(value: Any, profile: str) -> _dt.datetime | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    seconds = value / 1000 if profile == "clevertap" else value
    try:
        return _dt.datetime.fromtimestamp(seconds, _dt.timezone.utc)
    except (OverflowError, OSError, ValueError):
        return None


def _attachment_bytes(value: Any) -> bytes:
    """Braze sends an attachment's bytes as base64; anything else is kept as its text."""
    if isinstance(value, str):
        try:
            return base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            return value.encode("utf-8", "surrogatepass")
    if isinstance(value, list) and all(isinstance(b, int) and 0 <= b < 256 for b in value):
        return bytes(value)
    return b""
