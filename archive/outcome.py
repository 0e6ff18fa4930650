"""Archive outcomes: exactly one per input record.

ARCHIVED  the object is in the store: its URL, size, sha256, attempts, latency;
          `existed` when the key already held exactly these bytes (a re-run).
FAILED    the store refused or could not be reached after the retry budget, or
          the key holds other bytes (conflict): "failed to archive"; delivery
          must not treat it as archived.
INVALID   the input cannot be archived as given: the reason, and a reference
          (sha256 and size) to the original bytes kept in the dead-letter output.
SKIPPED   archiving is not enabled for the message's channel at its tenant.

An outcome never carries a recipient's address or number: keys hold only MD5
digests, reasons name fields, not values.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, fields
from typing import Any

ARCHIVED = "ARCHIVED"
FAILED = "FAILED"
INVALID = "INVALID"
SKIPPED = "SKIPPED"
STATUSES = (ARCHIVED, FAILED, INVALID, SKIPPED)


@dataclass(frozen=True)
class Outcome:
    status: str
    message_id: str | None
    tenant: str | None
    channel: str | None
    profile: str
    url: str | None = None            # ARCHIVED (and the attempted URL when FAILED)
    eml_url: str | None = None        # `email_format both`: the .eml beside the JSON at `url`
    byte_offset: int | None = None    # a batched object: where this message's frame starts in it
    bytes: int | None = None          # ARCHIVED: size of the written object (batched: of its frame)
    sha256: str | None = None         # ARCHIVED: of the written bytes (batched: of its frame)
    attempts: int | None = None       # ARCHIVED, FAILED
    existed: bool | None = None       # ARCHIVED: true when the key already held these same bytes
    latency_ms: float | None = None   # ARCHIVED, FAILED: first attempt to last answer
    error_class: str | None = None    # FAILED (an errors.ErrorClass value, or unknown_tenant)
    error: str | None = None          # FAILED: the store's message, credentials scrubbed
    reason: str | None = None         # INVALID, SKIPPED
    field: str | None = None          # INVALID: the offending field, when one is
    input_sha256: str | None = None   # INVALID: finds the original in the dead letters
    input_bytes: int | None = None    # INVALID
    source: str | None = None         # where the input came from (file:line, topic/partition@offset)
    at: str | None = None             # ISO-8601 UTC time of the outcome

    def to_dict(self) -> dict[str, Any]:
        # Shallow on purpose: every field is a plain value (dataclasses.asdict deep-copies).
        return {name: value for name in _OUTCOME_FIELDS if (value := getattr(self, name)) is not None}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False, separators=(",", ":"))


_OUTCOME_FIELDS = tuple(f.name for f in fields(Outcome))


@dataclass(frozen=True)
class DeadLetter:
    """An input that was not archived, kept whole so nothing is lost: INVALID
    (its content), or FAILED (the store), which `--input_format dead_letters`
    archives again once the store is back."""

    input_sha256: str
    reason: str
    field: str | None
    source: str | None
    data: bytes
    status: str = INVALID
    error_class: str | None = None   # FAILED: why the store did not take it

    def to_json(self) -> str:
        record: dict[str, Any] = {"status": self.status, "input_sha256": self.input_sha256,
                                  "reason": self.reason}
        if self.error_class:
            record["error_class"] = self.error_class
        if self.field:
            record["field"] = self.field
        if self.source:
            record["source"] = self.source
        try:
            record["input"] = self.data.decode("utf-8")
        except UnicodeDecodeError:
            record["input_base64"] = base64.b64encode(self.data).decode("ascii")
        return json.dumps(record, ensure_ascii=False, separators=(",", ":"))
