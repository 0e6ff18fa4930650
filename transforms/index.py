"""WriteAuditIndex: the index rows of archived objects, as Parquet files beside them.

    IndexRow (one per ARCHIVED outcome, from ArchiveMessages(index=True))
      ── key by (tenant, channel, date) ── GroupIntoBatches(rows_per_file, flush_seconds)
      ── _WriteIndexFn ──> <tenant's destination>/archive_index/tenant=T/channel=C/date=D/part-<run>-<id>.parquet

A row exists only for an object the store confirmed (ARCHIVED), so the index
never names an object that is not there. A backfill writes each partition's
rows when the input ends; a stream flushes a partition's file every
`flush_seconds` (a minute by default) or `rows_per_file` rows, whichever comes
first (`message-archiver index compact` merges the small files later).

Files are created, never replaced: each name carries the run id and a random
part, so a retried bundle adds a second file with the same rows (readers keep
one row per key) and no run touches another's files. A file the store
refuses is logged and counted (`audit_index/files_failed`), with how many rows
it held; the objects themselves are archived, and `message-archiver index
rebuild` recreates their rows by reading them back.
"""

from __future__ import annotations

import logging
import time
import typing
import uuid

import apache_beam as beam
from apache_beam.metrics import Metrics

from archive.audit import INDEX_PREFIX, ROWS_PER_FILE, index_file_key, index_table, parquet_bytes, partition_of
from archive.store import ObjectMetadata, ObjectStore, StoreSpec
from archive.tenants import TenantDirectory

_LOG = logging.getLogger(__name__)
METRICS_NAMESPACE = "audit_index"
PARQUET_MEDIA_TYPE = "application/vnd.apache.parquet"


class WriteAuditIndex(beam.PTransform):
    """Write IndexRows as Parquet under each tenant's destination.

    Args:
      store: the write settings (retry policy, breaker), as the archive's.
      tenants: where each tenant's objects (and so its index) live; None: the
        store's one destination.
      run_id: names this run's files.
      prefix: the index's folder under each destination.
      rows_per_file, flush_seconds: a file's most rows, and (streaming) the
        longest a row waits for its file.
    """

    def __init__(self, store: StoreSpec, tenants: TenantDirectory | None, run_id: str, prefix: str = INDEX_PREFIX,
                 rows_per_file: int = ROWS_PER_FILE, flush_seconds: float = 60.0):
        super().__init__()
        if tenants is None:  # one destination, as ArchiveMessages reads it
            destination = store.resolved()
            tenants = TenantDirectory.single(destination.url, destination.storage_options,
                                             allow_insecure_http=destination.allow_insecure_http)
        self._write = _WriteIndexFn(store, tenants, run_id, prefix)
        self._rows_per_file, self._flush_seconds = rows_per_file, flush_seconds

    def expand(self, rows):
        return (rows
                | "ByPartition" >> beam.Map(lambda row: (partition_of(row), row)).with_output_types(
                    typing.Tuple[typing.Tuple[str, str, str], typing.Any])  # a deterministic key coder
                | "Batch" >> beam.GroupIntoBatches(self._rows_per_file,
                                                   max_buffering_duration_secs=self._flush_seconds)
                | "WriteFiles" >> beam.ParDo(self._write))


class _WriteIndexFn(beam.DoFn):
    def __init__(self, store: StoreSpec, tenants: TenantDirectory, run_id: str, prefix: str):
        self._spec, self._tenants, self._run_id, self._prefix = store, tenants, run_id, prefix
        self._files = Metrics.counter(METRICS_NAMESPACE, "files_written")
        self._rows = Metrics.counter(METRICS_NAMESPACE, "rows_written")
        self._failed = Metrics.counter(METRICS_NAMESPACE, "files_failed")
        self._failed_rows = Metrics.counter(METRICS_NAMESPACE, "rows_failed")

    def setup(self):
        self._stores: dict[str, ObjectStore] = {}
        self._worker = uuid.uuid4().hex[:8]
        self._count = 0

    def process(self, batch):
        partition, rows = batch
        rows = list(rows)
        tenant = partition[0]
        self._count += 1
        name = f"part-{self._run_id}-{self._worker}-{int(time.time() * 1000)}-{self._count:06d}"
        key = index_file_key(partition, name, self._prefix)
        result = self._store_for(tenant).write(key, parquet_bytes(index_table(rows)),
                                               ObjectMetadata(content_type=PARQUET_MEDIA_TYPE))
        if result.ok:
            self._files.inc()
            self._rows.inc(len(rows))
        else:
            self._failed.inc()
            self._failed_rows.inc(len(rows))
            _LOG.error("the audit index file %s (%d rows of tenant %s) could not be written (%s); the objects "
                       "are archived: `message-archiver index rebuild` recreates their rows",
                       key, len(rows), tenant, result.error_class.value if result.error_class else "unknown")
        return ()

    def teardown(self):
        for store in getattr(self, "_stores", {}).values():
            store.close()

    def _store_for(self, tenant_name: str) -> ObjectStore:
        store = self._stores.get(tenant_name)
        if store is None:
            tenant = self._tenants.lookup(tenant_name)
            store = self._stores[tenant_name] = self._spec.for_destination(tenant.destination).open()
        return store
