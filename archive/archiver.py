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

from archive import audit, batches, encoding, frames
from archive.batches import BatchKey, BatchLimits
from archive.eml import eml
from archive.keys import KeyTemplate, KeyValues
from archive.envelope import (
    DEFAULT_MAX_MESSAGE_BYTES, INT64_MAX, INT64_MIN, Envelope, InvalidMessage, canonical_channel, canonical_json, decode,
    derived_message_id, parse_json,
)
from archive.errors import describe
from archive.outcome import ARCHIVED, FAILED, INVALID, SKIPPED, DeadLetter, Outcome
from archive.profiles import ArchiveEntry, BuildContext, Profile, get_profile
from archive.store import ObjectMetadata, WriteResult
from archive.tenants import TenantDirectory

DEFAULT_TENANT = "default"
UNKNOWN_TENANT = "unknown_tenant"


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
    profile: str = "clevertap"
    payload: Mapping[str, Any] | None = None  # what `data` encodes: the audit index reads its ids
    also: "ArchiveRequest | None" = None      # `email_format both`: the .eml written beside the JSON
    batch: BatchKey | None = None             # object_mode batched: the object it joins; `data` is its frame

    # A frozen dataclass's own __init__ sets each field with object.__setattr__; one
    # update of the instance's dict does the same at a third of the cost (one per message).
    def __init__(self, message_id: str, tenant: str, channel: str, key: str, data: bytes,
                 metadata: ObjectMetadata, source: str | None = None, profile: str = "clevertap",
                 payload: Mapping[str, Any] | None = None, also: "ArchiveRequest | None" = None,
                 batch: BatchKey | None = None):
        self.__dict__.update(message_id=message_id, tenant=tenant, channel=channel, key=key, data=data,
                             metadata=metadata, source=source, profile=profile, payload=payload, also=also,
                             batch=batch)

    @property
    def writes(self) -> list[tuple[str, bytes, ObjectMetadata]]:
        """The objects this message is archived as: one, or its JSON and its .eml."""
        first = (self.key, self.data, self.metadata)
        if self.also is None:
            return [first]
        return [first, (self.also.key, self.also.data, self.also.metadata)]


@dataclass(frozen=True)
class ArchiverConfig:
    profile: str = "clevertap"          # without a tenant file: every tenant's profile
    compression: str | None = None      # without a tenant file; None: the profile's own (lz4 / gzip)
    default_region: str | None = None   # for phone numbers without a country code
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    default_tenant: str = DEFAULT_TENANT  # the tenant of a message that names none
    # Without a tenant file: the one tenant's layout (see archive.tenants for each).
    key_template: str | None = None
    email_format: str = "json"
    object_mode: str = "message"
    batch: BatchLimits = BatchLimits()


@dataclass(frozen=True)
class _TenantRules:
    profile: Profile
    codec: encoding.Codec
    channels: frozenset
    content_type: str
    content_encoding: str | None
    template: KeyTemplate | None = None   # the tenant's own key layout
    email_format: str = "json"            # json | eml | both
    batch: BatchLimits | None = None      # object_mode batched: the limits of its objects


class Archiver:
    """Decides each message's fate and prepares its object.

    `tenants` says, per tenant, the profile, compression and enabled channels;
    without it every message is archived with `config.profile` and
    `config.compression`, whatever tenant it names.
    """

    def __init__(self, config: ArchiverConfig = ArchiverConfig(), tenants: TenantDirectory | None = None):
        self.config = config
        self.tenants = tenants
        self.profile = get_profile(config.profile)
        self.codec = encoding.get_codec(config.compression or self.profile.default_compression)
        self._catch_all = _TenantRules(
            self.profile, self.codec, frozenset(self.profile.channels), *self.codec.object_metadata(),
            KeyTemplate(config.key_template) if config.key_template else None, config.email_format,
            config.batch if config.object_mode == "batched" else None)
        self._file_context = BuildContext(None, config.default_region)  # a record without a source stamp
        self._rules: dict[str, _TenantRules] = {}
        if tenants is not None:
            for name, tenant in tenants.tenants.items():
                profile = get_profile(tenant.profile)
                codec = encoding.get_codec(tenant.compression or profile.default_compression)
                self._rules[name] = _TenantRules(
                    profile, codec, tenant.channels,
                    *codec.object_metadata(tenant.destination.http_content_encoding),
                    tenant.key_template, tenant.email_format,
                    tenant.batch if tenant.object_mode == "batched" else None)

    def prepare(self, raw: bytes | str | Mapping[str, Any] | None, source: str | None = None,
                received_millis: int | None = None) -> ArchiveRequest | Outcome:
        """Key and bytes for one input record, or the outcome that says why it is
        not archived (SKIPPED: its channel is not enabled for its tenant; FAILED:
        its tenant is unknown). Raises InvalidMessage for bad input, and nothing else.

        `received_millis` is the time the source stamped on the record (a Kafka
        record's timestamp, a Pub/Sub publish time), which a replay sees again;
        None for a file. It stands for a missing `sent_at`; the archive's own
        clock never decides an archived byte.
        """
        envelope = decode(raw, self.config.max_message_bytes)
        tenant = envelope.tenant
        if tenant is None:
            tenant = self.config.default_tenant
        if not tenant.strip():
            raise InvalidMessage("tenant is empty", "tenant")
        rules = self._rules_for(tenant)
        if rules is None:
            return self._not_archived(FAILED, envelope, tenant, self.profile.name, source,
                                      error_class=UNKNOWN_TENANT,
                                      error="failed to archive: no destination is configured for this tenant")
        # A channel the profile cannot represent is bad input (the build says so);
        # one it can, but the tenant did not enable, is skipped on purpose.
        if envelope.channel in rules.profile.channels and envelope.channel not in rules.channels:
            return self._not_archived(
                SKIPPED, envelope, tenant, rules.profile.name, source,
                reason=f"archiving of {envelope.channel} is not enabled for this tenant")
        context = self._file_context if received_millis is None else BuildContext(
            received_millis, self.config.default_region)
        entry = rules.profile.build(envelope, context)
        stem = entry.key_stem if rules.template is None else _templated_stem(rules, entry, tenant)
        json_bytes = encoding.payload_json(entry.payload)
        if rules.batch is not None:
            return self._member(rules, entry, json_bytes, tenant, source)
        if rules.email_format != "json" and entry.channel == "email":
            return self._email(rules, entry, stem, json_bytes, tenant, source)
        data = rules.codec.compress(json_bytes)
        return ArchiveRequest(
            message_id=entry.message_id,
            tenant=tenant,
            channel=entry.channel,
            key=encoding.object_key(stem, rules.codec),
            data=data,
            metadata=ObjectMetadata(rules.content_type, rules.content_encoding,
                                    hashlib.sha256(data).hexdigest(), rules.codec.name),
            source=source,
            profile=rules.profile.name,
            payload=entry.payload,
        )

    @staticmethod
    def _member(rules: _TenantRules, entry: ArchiveEntry, json_bytes: bytes, tenant: str,
                source: str | None) -> ArchiveRequest:
        """A message of a batched object: its frame, the batch it joins, and the key it
        would have had alone (the audit index reads its fields: recipient, campaign)."""
        data = frames.frame(rules.codec, json_bytes)
        return ArchiveRequest(
            message_id=entry.message_id, tenant=tenant, channel=entry.channel,
            key=encoding.object_key(entry.key_stem, rules.codec), data=data,
            metadata=ObjectMetadata(rules.content_type, rules.content_encoding, hashlib.sha256(data).hexdigest(),
                                    rules.codec.name),
            source=source, profile=rules.profile.name, payload=entry.payload,
            batch=batches.batch_of(tenant, entry.channel, entry.message_id, entry.sent_at_millis, rules.batch))

    def codec_for(self, tenant: str) -> encoding.Codec:
        """The codec of a (known) tenant's objects."""
        return self._rules_for(tenant).codec

    def _email(self, rules: _TenantRules, entry: ArchiveEntry, stem: str, json_bytes: bytes, tenant: str,
               source: str | None) -> ArchiveRequest:
        """An email as .eml (`eml`), or as its JSON with the .eml beside it (`both`):
        the same key, ".eml" for ".json"; the .eml names its JSON twin and that
        twin's sha256 in its X-Archive-* headers."""
        json_key = encoding.object_key(stem, rules.codec)
        data = rules.codec.compress(json_bytes)
        sha = hashlib.sha256(data).hexdigest()
        both = rules.email_format == "both"
        eml_bytes = rules.codec.compress(eml(entry.payload, rules.profile.name, json_key if both else None,
                                             sha if both else None))
        content_type = rules.content_type if rules.content_type != encoding.CONTENT_TYPE else "message/rfc822"
        eml_request = ArchiveRequest(
            message_id=entry.message_id, tenant=tenant, channel=entry.channel,
            key=encoding.object_key(stem, rules.codec, "eml"), data=eml_bytes,
            metadata=ObjectMetadata(content_type, rules.content_encoding, hashlib.sha256(eml_bytes).hexdigest(),
                                    rules.codec.name),
            source=source, profile=rules.profile.name, payload=entry.payload)
        if not both:
            return eml_request
        return ArchiveRequest(
            message_id=entry.message_id, tenant=tenant, channel=entry.channel, key=json_key, data=data,
            metadata=ObjectMetadata(rules.content_type, rules.content_encoding, sha, rules.codec.name),
            source=source, profile=rules.profile.name, payload=entry.payload, also=eml_request)

    def _rules_for(self, tenant: str) -> _TenantRules | None:
        if self.tenants is None:
            return self._catch_all
        rules = self._rules.get(tenant)
        if rules is None and self.tenants.catch_all is not None:
            return self._rules[self.tenants.catch_all]
        return rules

    def _not_archived(self, status: str, envelope: Envelope, tenant: str, profile: str,
                      source: str | None, **details) -> Outcome:
        given = envelope.get("message_id") or envelope.get("dispatch_id")
        message_id = str(given) if given is not None else derived_message_id(envelope)
        return Outcome(status, message_id=message_id, tenant=tenant, channel=envelope.channel,
                       profile=profile, source=source, at=_now_iso(), **details)

    def written(self, request: ArchiveRequest, result: WriteResult, also: WriteResult | None = None,
                byte_offset: int | None = None) -> Outcome:
        """ARCHIVED or FAILED, from the store's answer (answers: the JSON's, and the
        .eml's with `email_format both`; ARCHIVED only when both are stored)."""
        common = dict(message_id=request.message_id, tenant=request.tenant, channel=request.channel,
                      profile=request.profile, url=result.url, attempts=result.attempts,
                      latency_ms=result.latency_ms, source=request.source, at=_now_iso())
        if byte_offset is not None:
            common["byte_offset"] = byte_offset
        if also is not None:
            common["eml_url"] = also.url
            common["attempts"] = max(result.attempts, also.attempts)
            common["latency_ms"] = max(result.latency_ms, also.latency_ms)
            if result.ok and not also.ok:
                result = also
        if result.ok:
            return Outcome(ARCHIVED, bytes=len(request.data), existed=True if result.existed else None,
                           sha256=request.metadata.sha256 or hashlib.sha256(request.data).hexdigest(), **common)
        return Outcome(FAILED, error_class=result.error_class.value if result.error_class else "unknown",
                       error="failed to archive: " + describe(result.error), **common)

    def rejected(self, raw: bytes | str | Mapping[str, Any] | None, error: InvalidMessage,
                 source: str | None = None) -> tuple[Outcome, DeadLetter]:
        """INVALID, and the original bytes kept whole as a dead letter. Never raises."""
        dead_letter = self.dead_letter(raw, error.reason, error.field, source)
        # A record over the size limit is not parsed again just to name it.
        fields = _best_effort_fields(raw) if len(dead_letter.data) <= self.config.max_message_bytes else {}
        outcome = Outcome(
            INVALID, message_id=fields.get("message_id"), tenant=fields.get("tenant"),
            channel=fields.get("channel"), profile=self.profile.name, reason=error.reason,
            field=error.field, input_sha256=dead_letter.input_sha256, input_bytes=len(dead_letter.data),
            source=source, at=_now_iso())
        return outcome, dead_letter

    @staticmethod
    def dead_letter(raw: bytes | str | Mapping[str, Any] | None, reason: str, field: str | None = None,
                    source: str | None = None, failed: Outcome | None = None) -> DeadLetter:
        """The original bytes of a message that was not archived, kept whole;
        `failed`: the FAILED outcome of a message the store did not take."""
        data = raw_bytes(raw)
        if failed is not None:
            return DeadLetter(hashlib.sha256(data).hexdigest(), failed.error or reason, None, source, data,
                              FAILED, failed.error_class)
        return DeadLetter(hashlib.sha256(data).hexdigest(), reason, field, source, data)


def _templated_stem(rules: _TenantRules, entry: ArchiveEntry, tenant: str) -> str:
    """The tenant's own key for the entry: the preset key's fields (one home for how
    each is computed), laid out by the tenant's template."""
    parsed = audit.parse_key(entry.key_stem + ".json")
    return rules.template.render(KeyValues(
        tenant, rules.profile.name, entry.channel, entry.key_stem.split("/", 2)[1], entry.sent_at_millis,
        parsed.group, parsed.recipient_md5, entry.message_id))


def raw_bytes(raw: bytes | str | Mapping[str, Any] | None) -> bytes:
    """The input's bytes, for any input: never raises.

    A str gives back the bytes it was decoded from (surrogateescape), or, when
    it holds lone surrogates no bytes decode to, its code points as they are
    (surrogatepass). A mapping (a Parquet row) is kept as canonical JSON; one
    that JSON cannot hold (NaN, bytes, lone surrogates, deeper than Python's
    stack) as JSON-like text with those values spelled out.
    """
    if isinstance(raw, (bytes, bytearray, memoryview)):
        return bytes(raw)
    if raw is None:  # a Kafka tombstone: there are no bytes
        return b""
    if isinstance(raw, str):
        try:
            return raw.encode("utf-8", "surrogateescape")
        except UnicodeEncodeError:
            return raw.encode("utf-8", "surrogatepass")
    try:
        return canonical_json(raw)
    except (TypeError, ValueError, RecursionError, UnicodeEncodeError):
        return _lenient_json(raw).encode("utf-8", "surrogatepass")


def _lenient_json(value: Any) -> str:
    """Canonical-JSON-like text of any value, built without recursion: keys sorted
    by their text, what JSON cannot hold as repr() strings or bare NaN/Infinity."""
    out: list[str] = []
    stack: list[Any] = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, _Text):
            out.append(item)
        elif isinstance(item, Mapping):
            items = sorted(((str(k), v) for k, v in item.items()), key=lambda kv: kv[0])
            stack.append(_Text("}"))
            for index in range(len(items) - 1, -1, -1):
                stack.append(items[index][1])
                stack.append(_Text(json.dumps(items[index][0], ensure_ascii=False) + ":"))
                if index:
                    stack.append(_Text(","))
            stack.append(_Text("{"))
        elif isinstance(item, (list, tuple)):
            stack.append(_Text("]"))
            for index in range(len(item) - 1, -1, -1):
                stack.append(item[index])
                if index:
                    stack.append(_Text(","))
            stack.append(_Text("["))
        elif item is None or isinstance(item, (str, int, float)):
            out.append(json.dumps(item, ensure_ascii=False))
        else:
            out.append(json.dumps(repr(item), ensure_ascii=False))
    return "".join(out)


class _Text(str):
    """Already-written text on _lenient_json's stack."""


def _best_effort_fields(raw: Any) -> dict[str, str]:
    """message_id, tenant and (known) channel of a rejected record, when they can
    be read safely: short plain strings only, never a recipient field. Never raises."""
    record = raw
    if not isinstance(raw, Mapping):
        try:
            record = parse_json(raw_bytes(raw).decode("utf-8"))
        except (UnicodeDecodeError, InvalidMessage):
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
        if name in found:
            continue
        if type(value) is int and INT64_MIN <= value <= INT64_MAX:
            value = str(value)
        if type(value) is str and 0 < len(value) <= 200 and value.isprintable():
            found[name] = value
    return found


_second_text = (0, "")


def _now_iso() -> str:
    """The time of an outcome, to the millisecond; the date part is formatted once a second."""
    global _second_text
    now = time.time()
    second = int(now)
    cached, text = _second_text  # one read: another thread may replace it meanwhile
    if second != cached:
        text = _dt.datetime.fromtimestamp(second, _dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
        _second_text = (second, text)
    return f"{text}.{int((now - second) * 1000):03d}Z"
