"""Object-key segments: ids that are safe to place between two slashes.

An id from the input becomes part of an object key. One that could escape the
layout ("../"), add a level ("a/b"), or break a store or a URL (NUL, control
characters, '?', '#', '%') is bad input, not something to escape silently:
the key of a message must be predictable from the message.
"""

from __future__ import annotations

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
