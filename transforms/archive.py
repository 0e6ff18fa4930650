"""ArchiveMessages: outbound messages in, one archive outcome per message out.

    messages ──_PrepareFn──> ArchiveRequest ──_WriteArchiveFn──> ARCHIVED | FAILED ─┐
                 └──────────> INVALID outcome + dead letter ─────────────────────────┴─> outcomes

The transform does not care where messages come from (files, Kafka, Pub/Sub):
an element is the raw record (bytes, str, or a mapping) or a `SourcedRecord`
that also says where it was read.
"""

from __future__ import annotations

import collections
import logging
import time
from typing import Any, Mapping, NamedTuple

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.utils.windowed_value import WindowedValue

from archive.archiver import ArchiveRequest, Archiver, ArchiverConfig, raw_bytes
from archive.envelope import InvalidMessage
from archive.outcome import ARCHIVED, FAILED, INVALID, Outcome
from archive.store import ObjectStore, StoreSpec
from archive.tenants import TenantDirectory
from transforms.gate import Deliverable, invalid_key, message_key

_LOG = logging.getLogger(__name__)

METRICS_NAMESPACE = "archive"
OUTCOMES = "outcomes"
DEAD_LETTERS = "dead_letters"
REQUESTS = "requests"
MESSAGES = "messages"


class SourcedRecord(NamedTuple):
    """A raw input record and where it was read (file:line, topic/partition@offset)."""

    data: bytes | str | Mapping[str, Any]
    source: str | None = None
    position: Any = None     # a replayable source's resume point, carried to the gate's output
    attributes: Mapping[str, str] | None = None  # a Pub/Sub message's attributes and id


class ArchiveResult(NamedTuple):
    """The outputs of ArchiveMessages."""

    outcomes: beam.PCollection       # Outcome, exactly one per input record
    dead_letters: beam.PCollection   # DeadLetter, the original bytes of every INVALID record
    messages: beam.PCollection | None = None  # Deliverable per input, for GateDelivery


def outcome_counter(channel: str | None, status: str):
    return Metrics.counter(METRICS_NAMESPACE, f"{channel or 'unknown'}.{status}")


class ArchiveMessages(beam.PTransform):
    """Archive each message as one compressed JSON object; emit one Outcome each.

    Args:
      store: the write settings (concurrency, retry policy, breaker cooldown)
        and, without `tenants`, the one destination every message goes to.
      config: profile and compression (without `tenants`), phone default
        region, size limit, the tenant of messages that name none.
      tenants: per tenant, the destination, profile, compression and enabled
        channels. A message of an unknown tenant is FAILED, never written
        elsewhere; one on a channel its tenant did not enable is SKIPPED.
      emit_messages: also output every message as a Deliverable keyed like
        its outcome, for GateDelivery (the streaming path).
    """

    def __init__(self, store: StoreSpec, config: ArchiverConfig = ArchiverConfig(),
                 tenants: TenantDirectory | None = None, emit_messages: bool = False):
        super().__init__()
        self._emit_messages = emit_messages
        if tenants is None:
            destination = store.resolved()
            tenants = TenantDirectory.single(
                destination.url, destination.storage_options, config.profile, config.compression,
                name=config.default_tenant, allow_insecure_http=destination.allow_insecure_http)
        self._store = store
        self._config = config
        self._tenants = tenants
        Archiver(config, tenants)  # fail at construction, not on a worker, for a bad profile/codec

    def expand(self, messages):
        prepared = messages | "Prepare" >> beam.ParDo(
            _PrepareFn(self._config, self._tenants, self._emit_messages)).with_outputs(
            OUTCOMES, DEAD_LETTERS, MESSAGES, main=REQUESTS)
        written = prepared[REQUESTS] | "Write" >> beam.ParDo(
            _WriteArchiveFn(self._store, self._config, self._tenants))
        outcomes = (written, prepared[OUTCOMES]) | "Outcomes" >> beam.Flatten()
        return ArchiveResult(outcomes=outcomes, dead_letters=prepared[DEAD_LETTERS],
                             messages=prepared[MESSAGES] if self._emit_messages else None)


class _PrepareFn(beam.DoFn):
    """Decode, key and encode one message; bad input leaves as INVALID."""

    def __init__(self, config: ArchiverConfig, tenants: TenantDirectory, emit_messages: bool = False):
        self._config = config
        self._tenants = tenants
        self._emit_messages = emit_messages

    def setup(self):
        self._archiver = Archiver(self._config, self._tenants)

    def process(self, element):
        raw, source, position, attributes = (
            (element.data, element.source, element.position, element.attributes)
            if isinstance(element, SourcedRecord) else (element, None, None, None))
        try:
            prepared = self._archiver.prepare(raw, source)
        except InvalidMessage as error:
            outcome, dead_letter = self._archiver.rejected(raw, error, source)
            outcome_counter(outcome.channel, INVALID).inc()
            yield beam.pvalue.TaggedOutput(OUTCOMES, outcome)
            yield beam.pvalue.TaggedOutput(DEAD_LETTERS, dead_letter)
            if self._emit_messages:
                yield self._deliverable(invalid_key(outcome.input_sha256), outcome, dead_letter.data,
                                        source, position, attributes)
            return
        if isinstance(prepared, Outcome):  # SKIPPED, or FAILED for an unknown tenant
            outcome_counter(prepared.channel, prepared.status).inc()
            yield beam.pvalue.TaggedOutput(OUTCOMES, prepared)
            if prepared.status == FAILED:  # not archived anywhere: keep the original
                yield beam.pvalue.TaggedOutput(
                    DEAD_LETTERS, self._archiver.dead_letter(raw, prepared.error, None, source))
            if self._emit_messages:
                yield self._deliverable(message_key(prepared.tenant, prepared.message_id), prepared,
                                        raw_bytes(raw), source, position, attributes)
            return
        yield prepared
        if self._emit_messages:
            yield self._deliverable(message_key(prepared.tenant, prepared.message_id), prepared,
                                    raw_bytes(raw), source, position, attributes)

    @staticmethod
    def _deliverable(key, described, data, source, position, attributes):
        return beam.pvalue.TaggedOutput(MESSAGES, Deliverable(
            key, described.message_id, described.tenant, described.channel, data, source, position,
            dict(attributes) if attributes else None))


class _Pending(NamedTuple):
    request: ArchiveRequest
    future: Any
    timestamp: Any
    windows: Any


class _WriteArchiveFn(beam.DoFn):
    """Keeps up to `max_in_flight` writes going; emits each outcome when its write ends.

    Outcomes leave in completion order from `process` and whatever is still in
    flight is awaited in `finish_bundle`, so a bundle only commits once every
    one of its messages has an outcome.
    """

    _PROGRESS_EVERY_S = 10.0

    def __init__(self, store: StoreSpec, config: ArchiverConfig, tenants: TenantDirectory):
        self._spec = store
        self._config = config
        self._tenants = tenants
        self._bytes = Metrics.counter(METRICS_NAMESPACE, "bytes_written")
        self._latency = Metrics.distribution(METRICS_NAMESPACE, "write_latency_ms")
        self._attempts = Metrics.distribution(METRICS_NAMESPACE, "write_attempts")

    def setup(self):
        self._stores: dict[str, ObjectStore] = {}  # one per tenant, each with its own breaker
        self._archiver = Archiver(self._config, self._tenants)
        self._done = 0
        self._started = time.monotonic()
        self._next_progress = self._started + self._PROGRESS_EVERY_S

    def start_bundle(self):
        self._pending: collections.deque[_Pending] = collections.deque()

    def process(self, request: ArchiveRequest, timestamp=beam.DoFn.TimestampParam,
                window=beam.DoFn.WindowParam):
        future = self._store_for(request.tenant).submit(request.key, request.data, request.metadata)
        self._pending.append(_Pending(request, future, timestamp, (window,)))
        while self._pending and self._pending[0].future.done():
            yield self._outcome(self._pending.popleft())
        if len(self._pending) > 2 * self._spec.max_in_flight:
            # A slow write at the head (a retry backing off) must not hold back
            # everything finished behind it: emit those too and keep the rest.
            waiting = collections.deque()
            for pending in self._pending:
                if pending.future.done():
                    yield self._outcome(pending)
                else:
                    waiting.append(pending)
            self._pending = waiting

    def finish_bundle(self):
        while self._pending:
            yield self._outcome(self._pending.popleft())

    def teardown(self):
        for store in getattr(self, "_stores", {}).values():
            store.close()

    def _store_for(self, tenant_name: str) -> ObjectStore:
        store = self._stores.get(tenant_name)
        if store is None:
            tenant = self._tenants.lookup(tenant_name)  # prepared requests have a known tenant
            store = self._stores[tenant_name] = self._spec.for_destination(tenant.destination).open()
        return store

    def _outcome(self, pending: _Pending) -> WindowedValue:
        outcome: Outcome = self._archiver.written(pending.request, pending.future.result())
        outcome_counter(outcome.channel, outcome.status).inc()
        self._attempts.update(outcome.attempts or 0)
        if outcome.status == ARCHIVED:
            self._bytes.inc(outcome.bytes or 0)
            self._latency.update(int(outcome.latency_ms or 0))
        elif outcome.status == FAILED:
            _LOG.warning("failed to archive message %s (%s): %s",
                         outcome.message_id, outcome.error_class, outcome.error)
        self._report_progress()
        return WindowedValue(outcome, pending.timestamp, pending.windows)

    def _report_progress(self):
        self._done += 1
        now = time.monotonic()
        if now >= self._next_progress:
            self._next_progress = now + self._PROGRESS_EVERY_S
            rate = self._done / max(now - self._started, 1e-9)
            _LOG.info("archive progress: %d messages written by this worker (%.0f/s)", self._done, rate)
