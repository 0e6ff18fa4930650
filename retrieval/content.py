"""An index row's bytes read back, whatever the layout wrote them as.

    index row ──read_row──> the bytes it names: the whole object, or (byte_offset set) one
                            frame of a batched object, with a byte-range GET
    row + bytes ──status──> ok | changed | unreadable (a frame: its sha256, its length, one whole frame)
    row + bytes ──read_content──> Content: the payload (JSON, or a frame's JSON line)
                                  or the .eml (decompressed, as archived; `email_format eml|both`)

One home for the three shapes an archived message takes (archive.audit reads
their keys): the seeds' per-message JSON, a per-message .eml, and a frame of
a batched object (archive.frames). The CLI and the web page both read
through here.
"""

from __future__ import annotations

import email
import email.message
import email.policy
import hashlib
from typing import Any, Mapping, NamedTuple

from archive import encoding, frames
from archive.audit import read_eml, read_line, read_payload, row_ref
from archive.envelope import InvalidMessage
from retrieval.bucket import Bucket

_EML_ENDINGS = tuple(f".eml{codec.suffix}" for codec in encoding.CODECS.values())


class Content(NamedTuple):
    format: str                          # json | eml
    payload: dict[str, Any] | None       # json: the archived payload
    eml: bytes | None                    # eml: the RFC 5322 message as archived (decompressed)


def ref(row: Mapping[str, Any]) -> str:
    """The row's bytes named in a finding: its key, or `key@offset` for a frame."""
    return row_ref(row["key"], row.get("byte_offset"))


def is_eml(key: str) -> bool:
    return key.rsplit("/", 1)[-1].endswith(_EML_ENDINGS)


def is_frame(row: Mapping[str, Any]) -> bool:
    return row.get("byte_offset") is not None


def read_row(bucket: Bucket, row: Mapping[str, Any]) -> bytes:
    """The bytes an index row names (FileNotFoundError when its object is gone); a
    frame's range may come back short when the object was cut."""
    if is_frame(row):
        return bucket.read_range(row["key"], int(row["byte_offset"]), int(row["bytes"]))
    return bucket.read(row["key"])


def status(row: Mapping[str, Any], data: bytes) -> str:
    """ok: the bytes are what the index recorded (a frame: all of it, and one complete
    frame); changed: they are not; unreadable: a frame whose bytes match the index
    but are not one frame of one line (the index itself is wrong)."""
    if hashlib.sha256(data).hexdigest() != row["sha256"] or (is_frame(row) and len(data) != row["bytes"]):
        return "changed"
    if is_frame(row):
        try:
            frames.read_frame(row["compression"], data)
        except frames.CorruptObject:
            return "unreadable"
    return "ok"


def read_content(row: Mapping[str, Any], data: bytes) -> Content:
    """What the row's bytes hold; InvalidMessage when they are not an archived message
    (a frame not whole, JSON that is not an object, an .eml that is not one of ours)."""
    if is_frame(row):
        try:
            line = frames.read_frame(row["compression"], data)
        except frames.CorruptObject as exc:
            raise InvalidMessage(f"the bytes are not one whole frame of the batched object ({exc})") from None
        return Content("json", read_line(line), None)
    if is_eml(row["key"]):
        read_eml(data, row["compression"])  # one of ours, else InvalidMessage
        return Content("eml", None, encoding.get_codec(row["compression"]).decompress(data))
    return Content("json", read_payload(data, row["compression"]), None)


def parsed_eml(data: bytes) -> email.message.EmailMessage:
    return email.message_from_bytes(data, policy=email.policy.default)


def eml_view(data: bytes) -> dict[str, str]:
    """An archived .eml, parsed back with the email package, for showing as text:
    subject, sender, recipients, and its HTML and plain bodies (the HTML is only ever
    served into the sandboxed frame)."""
    message = parsed_eml(data)
    view = {"subject": _header(message, "Subject"), "from": _header(message, "From"), "to": _header(message, "To"),
            "html": "", "plain": ""}
    for kind in ("html", "plain"):
        try:
            part = message.get_body(preferencelist=(kind,))
            view[kind] = part.get_content() if part is not None else ""
        except (LookupError, ValueError, AttributeError, TypeError):
            view[kind] = ""
    return view


def _header(message, name: str) -> str:
    try:
        value = message.get(name)
    except (ValueError, TypeError, IndexError):
        return ""
    return "" if value is None else str(value)
