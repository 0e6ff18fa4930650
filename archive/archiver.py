"""One message through the archiver's pure steps, and the outcomes it can end in.

    raw bytes --decode--> Envelope --profile--> ArchiveEntry --encode--> ArchiveRequest
                                                     store write --> WriteResult --> Outcome

Nothing here does I/O; the Beam DoFns in `transforms.archive` call these
methods and the store, and nothing else.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import time
from dataclasses import dataclass
from typing import Any, Mapping

from archive import encoding
from archive.envelope import (
    DEFAULT_MAX_MESSAGE_BYTES, InvalidMessage, canonical_channel, canonical_json, decode,
)
from archive.errors import describe
from archive.outcome import ARCHIVED, FAILED, INVALID, DeadLetter, Outcome
from archive.profiles import BuildContext, get_profile
from archive.store import ObjectMetadata, WriteResult

DEFAULT_TENANT = "default"


@dataclass(frozen=True)
class ArchiveRequest:
    """A message ready for the store: its key and its encoded bytes."""

    message_id: str
    tenant: str
    channel: str
    key: str
    data: bytes
    metadata: ObjectMetadata
    source: str | None = None


@dataclass(frozen=True)
class ArchiverConfig:
    profile: str = "clevertap"
    compression: str | None = None      # None: the profile's own (lz4 / gzip)
    default_region: str | None = None   # for phone numbers without a country code
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    default_tenant: str = DEFAULT_TENANT


class Archiver:
    def __init__(self, config: ArchiverConfig = ArchiverConfig()):
        self.config = config
        self.profile = get_profile(config.profile)
        self.codec = encoding.get_codec(config.compression or self.profile.default_compression)
        self._metadata = ObjectMetadata(encoding.CONTENT_TYPE, self.codec.content_encoding)

    def prepare(self, raw: bytes | str | Mapping[str, Any], source: str | None = None,
                now_millis: int | None = None) -> ArchiveRequest:
        """Key and bytes for one input record; raises InvalidMessage for bad input."""
        envelope = decode(raw, self.config.max_message_bytes)
        tenant = envelope.tenant if envelope.tenant is not None else self.config.default_tenant
        if not tenant.strip():
            raise InvalidMessage("tenant is empty", "tenant")
        now = now_millis if now_millis is not None else int(time.time() * 1000)
        entry = self.profile.build(envelope, BuildContext(now, self.config.default_region))
        try:
            document = encoding.payload_json(entry.payload)
        except UnicodeEncodeError:
            raise InvalidMessage("a string holds an unpaired surrogate escape: not valid Unicode") from None
        return ArchiveRequest(
            message_id=entry.message_id,
            tenant=tenant,
            channel=entry.channel,
            key=encoding.object_key(entry.key_stem, self.codec),
            data=self.codec.compress(document),
            metadata=self._metadata,
            source=source,
        )

    def written(self, request: ArchiveRequest, result: WriteResult) -> Outcome:
        """ARCHIVED or FAILED, from the store's answer."""
        common = dict(message_id=request.message_id, tenant=request.tenant, channel=request.channel,
                      profile=self.profile.name, url=result.url, attempts=result.attempts,
                      latency_ms=result.latency_ms, source=request.source, at=_now_iso())
        if result.ok:
            return Outcome(ARCHIVED, bytes=len(request.data),
                           sha256=hashlib.sha256(request.data).hexdigest(), **common)
        return Outcome(FAILED, error_class=result.error_class.value if result.error_class else "unknown",
                       error="failed to archive: " + describe(result.error), **common)

    def rejected(self, raw: bytes | str | Mapping[str, Any], error: InvalidMessage,
                 source: str | None = None) -> tuple[Outcome, DeadLetter]:
        """INVALID, and the original bytes kept whole as a dead letter."""
        data = _raw_bytes(raw)
        digest = hashlib.sha256(data).hexdigest()
        fields = _best_effort_fields(raw)
        outcome = Outcome(
            INVALID, message_id=fields.get("message_id"), tenant=fields.get("tenant"),
            channel=fields.get("channel"), profile=self.profile.name, reason=error.reason,
            field=error.field, input_sha256=digest, input_bytes=len(data), source=source,
            at=_now_iso())
        return outcome, DeadLetter(digest, error.reason, error.field, source, data)


def _raw_bytes(raw: bytes | str | Mapping[str, Any]) -> bytes:
    if isinstance(raw, (bytes, bytearray, memoryview)):
        return bytes(raw)
    if isinstance(raw, str):
        return raw.encode("utf-8", "surrogateescape")
    return canonical_json(raw)


def _best_effort_fields(raw: Any) -> dict[str, str]:
    """message_id, tenant and (known) channel of a rejected record, when they can
    be read safely: short plain strings only, never a recipient field."""
    record = raw
    if not isinstance(raw, Mapping):
        try:
            record = json.loads(_raw_bytes(raw).decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            return {}
    if not isinstance(record, Mapping):
        return {}
    found = {}
    channel = canonical_channel(record.get("channel"))
    if channel:
        found["channel"] = channel
    for name, source in (("message_id", "message_id"), ("message_id", "dispatch_id"),
                         ("tenant", "tenant")):
        value = record.get(source)
        if name not in found and isinstance(value, (str, int)) and not isinstance(value, bool):
            text = str(value)
            if 0 < len(text) <= 200 and text.isprintable():
                found[name] = text
    return found


def _now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
