"""ArchiveMessages: outbound messages in, one archive outcome per message out.

    messages ──_ArchiveFn──┬─ prepare ──> write (batched, up to max_in_flight) ──> ARCHIVED | FAILED ─┐
                           ├─ a batched tenant's message ──> WriteBatches (transforms.batches) ───────┤
                           └─ INVALID, SKIPPED, FAILED (unknown tenant) ─────────────────────────────┴─> outcomes
                              every INVALID and FAILED input, whole ─────────────────────────────────> dead letters
                              with index=True, an audit index row per ARCHIVED object ──────────────────> index_rows

A FAILED message's dead letter is what `--input_format dead_letters` archives
again (the re-drive) once the store is back.

One DoFn prepares and writes, so every outcome leaves one ParDo: a Flatten
of two outputs would cut the fused stage in two on the FnApiRunner and
materialize every outcome between them (bench/README.md has the numbers).

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
from apache_beam.utils.timestamp import MIN_TIMESTAMP
from apache_beam.utils.windowed_value import WindowedValue

from archive import audit
from archive.archiver import ArchiveRequest, Archiver, ArchiverConfig, raw_bytes
from archive.envelope import InvalidMessage
from archive.outcome import ARCHIVED, FAILED, Outcome
from archive.store import StoreSpec, TenantStores
from archive.tenants import TenantDirectory
from transforms.metrics import METRICS_NAMESPACE, outcome_counter
from archive.batches import BatchLimits
from transforms.batches import WriteBatches, batch_element
from transforms.gate import ArchivedMessage, Deliverable, invalid_key, message_key

_LOG = logging.getLogger(__name__)

OUTCOMES = "outcomes"
DEAD_LETTERS = "dead_letters"
MESSAGES = "messages"
INDEX_ROWS = "index_rows"
BATCH_MEMBERS = "batch_members"


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
    messages: beam.PCollection | None = None  # ArchivedMessage per input (with its outcome), for GateDelivery
    index_rows: beam.PCollection | None = None  # audit.IndexRow per ARCHIVED object, for WriteAuditIndex


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
      emit_messages: also output every message with its own outcome (an
        ArchivedMessage), the moment the outcome is known, for GateDelivery
        (the streaming path).
      index: also output the audit index row (audit.IndexRow) of every
        ARCHIVED object, for WriteAuditIndex.
    """

    def __init__(self, store: StoreSpec, config: ArchiverConfig = ArchiverConfig(),
                 tenants: TenantDirectory | None = None, emit_messages: bool = False, index: bool = False):
        super().__init__()
        self._emit_messages = emit_messages
        self._index = index
        if tenants is None:
            destination = store.resolved()
            tenants = TenantDirectory.single(
                destination.url, destination.storage_options, config.profile, config.compression,
                name=config.default_tenant, allow_insecure_http=destination.allow_insecure_http,
                key_template=config.key_template, email_format=config.email_format,
                object_mode=config.object_mode, batch=config.batch)
        self._store = store
        self._config = config
        self._tenants = tenants
        Archiver(config, tenants)  # fail at construction, not on a worker, for a bad profile/codec

    def expand(self, messages):
        archived = messages | "Archive" >> beam.ParDo(
            _ArchiveFn(self._store, self._config, self._tenants, self._emit_messages, self._index)).with_outputs(
            DEAD_LETTERS, MESSAGES, INDEX_ROWS, BATCH_MEMBERS, main=OUTCOMES)
        outcomes, dead_letters = archived[OUTCOMES], archived[DEAD_LETTERS]
        messages_out, index_rows = archived[MESSAGES], archived[INDEX_ROWS]
        batched = [t.batch for t in self._tenants.tenants.values() if t.object_mode == "batched"]
        if batched:  # only then: a Flatten cuts the fused stage in two (see the module docstring)
            limits = BatchLimits(seconds=min(b.seconds for b in batched),
                                 max_messages=max(b.max_messages for b in batched))
            written = archived[BATCH_MEMBERS] | "WriteBatches" >> WriteBatches(
                self._store, self._config, self._tenants, streaming=self._emit_messages, limits=limits)
            outcomes = (outcomes, written.outcomes) | "AllOutcomes" >> beam.Flatten()
            dead_letters = (dead_letters, written.dead_letters) | "AllDeadLetters" >> beam.Flatten()
            messages_out = (messages_out, written.messages) | "AllMessages" >> beam.Flatten()
            index_rows = (index_rows, written.index_rows) | "AllIndexRows" >> beam.Flatten()
        return ArchiveResult(outcomes=outcomes, dead_letters=dead_letters,
                             messages=messages_out if self._emit_messages else None,
                             index_rows=index_rows if self._index else None)


def _done(future) -> bool:
    if isinstance(future, tuple):
        return all(f.done() for f in future)
    return future.done()


class _Pending(NamedTuple):
    request: ArchiveRequest
    future: Any                  # the write's future; a pair (JSON's, .eml's) with email_format both
    timestamp: Any
    windows: Any
    message: Deliverable | None  # with emit_messages: leaves with the outcome
    raw: Any                     # the input as received: a FAILED write's dead letter


class _ArchiveFn(beam.DoFn):
    """Decode, key and encode each message, then write its object.

    Bad input leaves at once as INVALID (with its dead letter). Prepared
    objects are handed to the store in batches (one wake-up of its I/O loop
    each), with up to `max_in_flight` writes pending; each outcome leaves as
    its write ends, in completion order, and `finish_bundle` waits for the
    rest, so a bundle commits only once each of its messages has one. With
    `emit_messages`, each message leaves with its outcome, at the same moment.
    """

    _PROGRESS_EVERY_S = 10.0

    def __init__(self, store: StoreSpec, config: ArchiverConfig, tenants: TenantDirectory,
                 emit_messages: bool = False, index: bool = False):
        self._spec = store
        self._config = config
        self._tenants = tenants
        self._emit_messages = emit_messages
        self._index = index
        self._batch_size = max(1, min(16, store.max_in_flight // 4))
        self._bytes = Metrics.counter(METRICS_NAMESPACE, "bytes_written")
        self._latency = Metrics.distribution(METRICS_NAMESPACE, "write_latency_ms")
        self._attempts = Metrics.distribution(METRICS_NAMESPACE, "write_attempts")

    def setup(self):
        self._archiver = Archiver(self._config, self._tenants)
        self._layouts = audit.layouts_of(self._tenants)
        self._store_for = TenantStores(self._spec, self._tenants)  # one per tenant, each with its own breaker
        self._counters: dict[tuple, Any] = {}
        self._done = 0
        self._started = time.monotonic()
        self._next_progress = self._started + self._PROGRESS_EVERY_S

    def start_bundle(self):
        self._batch: list[_Pending] = []  # prepared, not yet handed to the store
        self._pending: collections.deque[_Pending] = collections.deque()

    def process(self, element, timestamp=beam.DoFn.TimestampParam, window=beam.DoFn.WindowParam):
        raw, source, position, attributes = (
            (element.data, element.source, element.position, element.attributes)
            if isinstance(element, SourcedRecord) else (element, None, None, None))
        try:
            prepared = self._archiver.prepare(raw, source, received_millis=self._received_millis(timestamp))
        except InvalidMessage as error:
            outcome, dead_letter = self._archiver.rejected(raw, error, source)
            self._count(outcome)
            yield outcome
            yield beam.pvalue.TaggedOutput(DEAD_LETTERS, dead_letter)
            if self._emit_messages:
                yield self._archived(self._deliverable(invalid_key(outcome.input_sha256), outcome,
                                                       dead_letter.data, source, position, attributes), outcome)
            return
        message = self._deliverable(message_key(prepared.tenant, prepared.message_id), prepared, raw_bytes(raw),
                                    source, position, attributes) if self._emit_messages else None
        if isinstance(prepared, Outcome):  # SKIPPED, or FAILED for an unknown tenant
            self._count(prepared)
            yield prepared
            if prepared.status == FAILED:  # not archived anywhere: keep the original
                yield beam.pvalue.TaggedOutput(
                    DEAD_LETTERS, self._archiver.dead_letter(raw, prepared.error, None, source, failed=prepared))
            if message is not None:
                yield self._archived(message, prepared)
            return
        if prepared.batch is not None:  # a batched tenant's message: written with its batch
            yield beam.pvalue.TaggedOutput(BATCH_MEMBERS, batch_element(
                prepared, message, raw, self._index_row(prepared) if self._index else None))
            return
        store = self._store_for(prepared.tenant)
        if store.writes_inline:  # local disk: no future, no hand-off
            result = store.write(prepared.key, prepared.data, prepared.metadata)
            also = None if prepared.also is None else store.write(*prepared.writes[1])
            yield from self._outcome(prepared, result, timestamp, (window,), message, raw, also)
            return
        self._batch.append(_Pending(prepared, None, timestamp, (window,), message, raw))
        if len(self._batch) >= self._batch_size:
            self._submit()
        yield from self._finished()

    def finish_bundle(self):
        self._submit()
        while self._pending:
            yield from self._written(self._pending.popleft())

    def teardown(self):
        if hasattr(self, "_store_for"):
            self._store_for.close()

    def _submit(self):
        batch, self._batch = self._batch, []
        by_tenant: dict[str, list[_Pending]] = {}
        for item in batch:
            by_tenant.setdefault(item.request.tenant, []).append(item)
        for tenant, items in by_tenant.items():
            futures = iter(self._store_for(tenant).submit_many(
                [write for item in items for write in item.request.writes]))
            self._pending.extend(
                item._replace(future=next(futures) if item.request.also is None else (next(futures), next(futures)))
                for item in items)

    def _finished(self):
        """The outcomes of the writes that have ended, oldest first."""
        pending = self._pending
        while pending and _done(pending[0].future):
            yield from self._written(pending.popleft())
        if len(pending) > 2 * self._spec.max_in_flight:
            # A slow write at the head (a retry backing off) must not hold back
            # everything finished behind it: emit those too and keep the rest.
            waiting = collections.deque()
            for item in pending:
                if _done(item.future):
                    yield from self._written(item)
                else:
                    waiting.append(item)
            self._pending = waiting

    def _count(self, outcome: Outcome) -> None:
        key = (outcome.channel, outcome.status)
        counter = self._counters.get(key)
        if counter is None:
            counter = self._counters[key] = outcome_counter(*key)
        counter.inc()

    def _written(self, pending: _Pending):
        future, also = pending.future, None
        if isinstance(future, tuple):  # the JSON's write and the .eml's
            future, also = future[0], future[1].result()
        return self._outcome(pending.request, future.result(), pending.timestamp, pending.windows,
                             pending.message, pending.raw, also)

    def _received_millis(self, timestamp) -> int | None:
        """The time a streaming source stamped on the record (Kafka timestamp, Pub/Sub
        publish time): the send time of a record without sent_at, the same on a replay.
        A file record has none."""
        if not self._emit_messages or timestamp is None or timestamp <= MIN_TIMESTAMP:
            return None
        return timestamp.micros // 1000

    def _outcome(self, request: ArchiveRequest, result, timestamp, windows, message: Deliverable | None, raw,
                 also=None):
        """The outcome of a write (and the message with it), in the input's time and windows."""
        outcome: Outcome = self._archiver.written(request, result, also)
        self._count(outcome)
        self._attempts.update(outcome.attempts or 0)
        if outcome.status == ARCHIVED:
            self._bytes.inc(outcome.bytes or 0)
            self._latency.update(int(outcome.latency_ms or 0))
            if self._index:
                for stored in (request, request.also):
                    row = self._index_row(stored) if stored is not None else None
                    if row is not None:
                        yield beam.pvalue.TaggedOutput(INDEX_ROWS, WindowedValue(row, timestamp, windows))
        elif outcome.status == FAILED:
            _LOG.warning("failed to archive message %s (%s): %s",
                         outcome.message_id, outcome.error_class, outcome.error)
            yield beam.pvalue.TaggedOutput(DEAD_LETTERS, WindowedValue(
                self._archiver.dead_letter(raw, outcome.error, None, request.source, failed=outcome),
                timestamp, windows))
        self._report_progress()
        yield WindowedValue(outcome, timestamp, windows)
        if message is not None:
            yield beam.pvalue.TaggedOutput(MESSAGES, WindowedValue(ArchivedMessage(message, outcome),
                                                                   timestamp, windows))

    def _index_row(self, request: ArchiveRequest) -> audit.IndexRow | None:
        """The object's audit index row: its key read back (one home for the layouts),
        the ids its payload holds, its size and sha256."""
        parsed = audit.parse_key(request.key, self._layouts)
        if parsed is None:  # every profile's key parses back (tests/test_audit.py): a bug, said loudly
            _LOG.error("the key of message %s does not read back as an archive key: no index row",
                       request.message_id)
            return None
        return audit.index_row(parsed, request.data, request.tenant, int(time.time() * 1000),
                               request.payload, request.metadata.sha256)

    @staticmethod
    def _archived(message: Deliverable, outcome: Outcome):
        return beam.pvalue.TaggedOutput(MESSAGES, ArchivedMessage(message, outcome))

    @staticmethod
    def _deliverable(key, described, data, source, position, attributes) -> Deliverable:
        return Deliverable(key, described.message_id, described.tenant, described.channel, data, source,
                           position, dict(attributes) if attributes else None)

    def _report_progress(self):
        self._done += 1
        now = time.monotonic()
        if now >= self._next_progress:
            self._next_progress = now + self._PROGRESS_EVERY_S
            rate = self._done / max(now - self._started, 1e-9)
            _LOG.info("archive progress: %d messages written by this worker (%.0f/s)", self._done, rate)
