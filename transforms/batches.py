"""WriteBatches: messages of batched tenants in, one object per batch, one outcome per message out.

    (batch key, member) ──group──>  a batch's members ──_WriteBatchFn──┬─> ARCHIVED | FAILED per message
        backfill: GroupByKey          plan parts (archive.batches)     ├─> dead letters (FAILED, whole input)
        stream:   GroupIntoBatches    write each part: a conditional   ├─> ArchivedMessage (for the gate)
                  (max_messages,      create; on another part's bytes  └─> audit index rows (key, byte range)
                   window seconds)    at its key, the next free number

The batch key (tenant, channel, window start, shard) comes from the message
(archive.batches.batch_of), so a backfill's GroupByKey sees every member of a
batch at once and a re-run writes the same parts with the same bytes. A stream
flushes a batch every `seconds` or `max_messages`: a flush takes the first part
number whose key is free or already holds exactly its bytes (a replay of the
same flush), so no flush ever replaces another's object. Every message leaves
with the outcome of its part's write, the moment it is known: the gate releases
a message only once its object is durable, so batching adds its window to
delivery latency.
"""

from __future__ import annotations

import logging
import time
from typing import Any, NamedTuple

import apache_beam as beam
import dataclasses

from apache_beam.metrics import Metrics

from archive import audit, batches
from archive.archiver import ArchiveRequest, Archiver, ArchiverConfig, raw_bytes
from archive.errors import ErrorClass
from archive.outcome import ARCHIVED, FAILED
from archive.store import ObjectMetadata, ObjectStore, StoreSpec, TenantStores
from archive.tenants import TenantDirectory
from transforms.gate import ArchivedMessage, Deliverable
from transforms.metrics import METRICS_NAMESPACE, outcome_counter

_LOG = logging.getLogger(__name__)
# How many part numbers a flush tries past its own before it gives up (FAILED):
# each taken one is another flush's object of the same batch.
MAX_PART_PROBES = 10_000


# A batched message on its way to its batch: a plain tuple of strings, bytes and
# ints (the index row's values too), which every runner's coder encodes as it is,
# where an object graph would be pickled (the backfill's GroupByKey moves every member).
#   (message_id, tenant, channel, profile, source, frame, frame sha256,
#    index row values or None, the input's bytes, Deliverable or None)
_ID, _TENANT, _CHANNEL, _PROFILE, _SOURCE, _FRAME, _SHA, _ROW, _RAW, _MESSAGE = range(10)


def batch_element(request: ArchiveRequest, message: Deliverable | None, raw: Any,
                  row: audit.IndexRow | None = None):
    """The (key, member) a batched message travels to its batch as. `row`: its audit
    index row as the key it would have had alone reads (key, range and time are the
    batch's, set when it is written)."""
    return tuple(request.batch), (
        request.message_id, request.tenant, request.channel, request.profile, request.source, request.data,
        request.metadata.sha256, None if row is None else tuple(getattr(row, f) for f in audit.INDEX_FIELDS),
        raw_bytes(raw), message)


class _Outputs(NamedTuple):
    outcomes: beam.PCollection
    dead_letters: beam.PCollection
    messages: beam.PCollection
    index_rows: beam.PCollection


OUTCOMES, DEAD_LETTERS, MESSAGES, INDEX_ROWS = "outcomes", "dead_letters", "messages", "index_rows"


class WriteBatches(beam.PTransform):
    """Group batched messages into objects and write them (see the module docstring).

    Args:
      store: write settings (and, without `tenants`, the destination).
      config: as ArchiveMessages'.
      tenants: each tenant's destination, codec and batch limits.
      streaming: flush by GroupIntoBatches (max_messages or the window's seconds)
        instead of one GroupByKey over the whole input.
      limits: the largest batch limits of any tenant, for GroupIntoBatches.
    """

    def __init__(self, store: StoreSpec, config: ArchiverConfig, tenants: TenantDirectory, streaming: bool,
                 limits: batches.BatchLimits):
        super().__init__()
        self._store, self._config, self._tenants = store, config, tenants
        self._streaming, self._limits = streaming, limits

    def expand(self, members):
        if self._streaming:
            grouped = members | "Batch" >> beam.GroupIntoBatches(
                self._limits.max_messages, max_buffering_duration_secs=self._limits.seconds)
        else:
            grouped = members | "Batch" >> beam.GroupByKey()
        written = grouped | "WriteBatch" >> beam.ParDo(
            _WriteBatchFn(self._store, self._config, self._tenants)).with_outputs(
            DEAD_LETTERS, MESSAGES, INDEX_ROWS, main=OUTCOMES)
        return _Outputs(written[OUTCOMES], written[DEAD_LETTERS], written[MESSAGES], written[INDEX_ROWS])


class _WriteBatchFn(beam.DoFn):
    """Plan a batch's parts, write each, and give every member its outcome."""

    def __init__(self, store: StoreSpec, config: ArchiverConfig, tenants: TenantDirectory):
        self._spec, self._config, self._tenants = store, config, tenants
        self._objects = Metrics.counter(METRICS_NAMESPACE, "batch_objects_written")
        self._bytes = Metrics.counter(METRICS_NAMESPACE, "bytes_written")
        self._members = Metrics.distribution(METRICS_NAMESPACE, "batch_messages_per_object")

    def setup(self):
        self._archiver = Archiver(self._config, self._tenants)
        self._store_for = TenantStores(self._spec, self._tenants)
        self._next_part: dict[tuple, int] = {}  # a hint only: the store's conditional create decides
        self._counters: dict[tuple, Any] = {}

    def teardown(self):
        if hasattr(self, "_store_for"):
            self._store_for.close()

    def process(self, element):
        key, members = element
        batch = batches.BatchKey(*key)
        tenant = self._tenants.lookup(batch.tenant)
        limits, codec = tenant.batch, self._archiver.codec_for(batch.tenant)
        by_member: dict[batches.Member, list[tuple]] = {}
        for member in members:
            by_member.setdefault(batches.Member(member[_ID], member[_FRAME]), []).append(member)
        store = self._store_for(batch.tenant)
        metadata = ObjectMetadata(*codec.object_metadata(tenant.destination.http_content_encoding),
                                  compression=codec.name)
        first = self._next_part.get(key, 0)
        for part in batches.plan(list(by_member), limits):
            data, placed = batches.assemble(part)
            number, object_key, result = self._write(store, batch, first, data, metadata, codec.suffix)
            first = number + 1
            if result.ok:
                self._objects.inc()
                self._bytes.inc(len(data))
                self._members.update(len(part))
            for where in placed:
                for member in by_member[where.member]:
                    yield from self._outcome(member, result, where.offset, object_key)
        self._next_part[key] = first

    def _write(self, store: ObjectStore, batch, first: int, data: bytes, metadata: ObjectMetadata, suffix: str):
        """(part number, key, WriteResult): the first number from `first` whose key is
        free or already holds these bytes."""
        number = first
        while True:
            key = batches.object_key(batch, number, suffix)
            result = store.write(key, data, metadata)
            if result.ok or result.error_class is not ErrorClass.CONFLICT or number - first >= MAX_PART_PROBES:
                return number, key, result
            number += 1

    def _outcome(self, member: tuple, result, offset: int, object_key: str):
        request = ArchiveRequest(member[_ID], member[_TENANT], member[_CHANNEL], object_key, member[_FRAME],
                                 ObjectMetadata(sha256=member[_SHA]), member[_SOURCE], member[_PROFILE])
        outcome = self._archiver.written(request, result, byte_offset=offset if result.ok else None)
        if outcome.status == ARCHIVED:
            if member[_ROW] is not None:
                yield beam.pvalue.TaggedOutput(INDEX_ROWS, dataclasses.replace(
                    audit.IndexRow(*member[_ROW]), key=object_key, byte_offset=offset,
                    archived_at_ms=int(time.time() * 1000)))
        elif outcome.status == FAILED:
            _LOG.warning("failed to archive message %s in a batch (%s): %s",
                         outcome.message_id, outcome.error_class, outcome.error)
            yield beam.pvalue.TaggedOutput(DEAD_LETTERS, self._archiver.dead_letter(
                member[_RAW], outcome.error, None, request.source, failed=outcome))
        counter_key = (outcome.channel, outcome.status)
        if counter_key not in self._counters:
            self._counters[counter_key] = outcome_counter(*counter_key)
        self._counters[counter_key].inc()
        yield outcome
        if member[_MESSAGE] is not None:
            yield beam.pvalue.TaggedOutput(MESSAGES, ArchivedMessage(member[_MESSAGE], outcome))
