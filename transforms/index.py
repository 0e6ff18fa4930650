"""WriteAuditIndex: the index rows of archived objects as Parquet files, and the manifests' hash chain.

    IndexRow (one per ARCHIVED outcome, from ArchiveMessages(index=True))
    a stream:
      ├─ key by (tenant, channel, date) ── GroupIntoBatches(rows_per_file, flush_seconds)
      │    ── _WriteIndexFn ──> <destination>/archive_index/tenant=T/channel=C/date=D/part-….parquet
      └─ (key, sha256) by tenant ── GroupIntoBatches(MANIFEST_ENTRIES, manifest_seconds)
           ── _WriteManifestFn ──> <destination>/archive_manifests/tenant=T/<sequence>.json (the next link)
    a backfill: _WriteBufferedFn, per worker and bundle (or per rows_per_file rows): the same files and
      manifests, with memory bounded whatever the input's size

A row exists only for an object the store confirmed (ARCHIVED), so the index
never names an object that is not there. A backfill writes each partition's
rows as each worker's bundle ends (or every 50,000 rows); a stream flushes a partition's file every
`flush_seconds` (a minute by default) or `rows_per_file` rows, whichever comes
first (`message-archiver index compact` merges the small files later).

Manifests (archive.audit) chain per tenant: each names the chain hash of the
one before, found by listing the tenant's manifests once per worker and then
followed; the next one is created only if its sequence number is free (a
conditional create), so two workers never fork the chain: the loser reads
the new head and takes the next number. They go through the tenant's store,
with its Object Lock settings. A backfill writes one per tenant and bundle
(or per 50,000 objects), a stream one an hour (or per 100,000 objects).

Files are created, never replaced: each name carries the run id and a random
part, so a retried bundle adds a second file with the same rows (readers keep
one row per key) and no run touches another's files. A file the store
refuses is logged and counted (`audit_index/files_failed`), with how many rows
it held; the objects themselves are archived, and `message-archiver index
rebuild` recreates their rows by reading them back.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import logging
import time
import typing
import uuid

import apache_beam as beam
from apache_beam.metrics import Metrics

from archive import audit
from archive.audit import INDEX_PREFIX, ROWS_PER_FILE, index_file_key, index_table, parquet_bytes, partition_of
from archive.errors import ErrorClass
from archive.store import ObjectMetadata, ObjectStore, StoreSpec, TenantStores
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
      manifest_seconds: (streaming) the longest an object waits for its manifest.
      streaming: the input is a stream: files and manifests are written as
        they fill or time out, not once the input ends.
    """

    def __init__(self, store: StoreSpec, tenants: TenantDirectory | None, run_id: str, prefix: str = INDEX_PREFIX,
                 rows_per_file: int = ROWS_PER_FILE, flush_seconds: float = 60.0,
                 manifest_seconds: float = 3600.0, streaming: bool = False):
        super().__init__()
        self._streaming = streaming
        if tenants is None:  # one destination, as ArchiveMessages reads it
            destination = store.resolved()
            tenants = TenantDirectory.single(destination.url, destination.storage_options,
                                             allow_insecure_http=destination.allow_insecure_http)
        self._store, self._tenants, self._run_id, self._prefix = store, tenants, run_id, prefix
        self._rows_per_file, self._flush_seconds = rows_per_file, flush_seconds
        self._manifest_seconds = manifest_seconds

    def expand(self, rows):
        if not self._streaming:  # a backfill: each worker writes what it holds, at most so many rows
            return rows | "WriteIndex" >> beam.ParDo(_WriteBufferedFn(
                self._store, self._tenants, self._run_id, self._prefix, self._rows_per_file))
        # a stream: a file when it is full or has waited long enough, its rows kept in state
        files = (rows
                 | "ByPartition" >> beam.Map(lambda row: (partition_of(row), row)).with_output_types(
                     typing.Tuple[typing.Tuple[str, str, str], typing.Any])  # a deterministic key coder
                 | "Batch" >> beam.GroupIntoBatches(self._rows_per_file,
                                                    max_buffering_duration_secs=self._flush_seconds)
                 | "WriteFiles" >> beam.ParDo(_WriteIndexFn(self._store, self._tenants, self._run_id,
                                                            self._prefix)))
        manifests = (rows
                     | "ByTenant" >> beam.Map(lambda row: (row.tenant, (row.key, row.sha256))).with_output_types(
                         typing.Tuple[str, typing.Tuple[str, str]])
                     | "Entries" >> beam.GroupIntoBatches(audit.MANIFEST_ENTRIES,
                                                          max_buffering_duration_secs=self._manifest_seconds)
                     | "WriteManifests" >> beam.ParDo(_WriteManifestFn(self._store, self._tenants, self._run_id)))
        return files, manifests


class _TenantStoresFn(beam.DoFn):
    """A DoFn that writes to each tenant's destination through its own store."""

    def __init__(self, store: StoreSpec, tenants: TenantDirectory, run_id: str):
        self._spec, self._tenants, self._run_id = store, tenants, run_id

    def setup(self):
        self._store_for = TenantStores(self._spec, self._tenants)

    def teardown(self):
        if hasattr(self, "_store_for"):
            self._store_for.close()


class _WriteIndexFn(_TenantStoresFn):
    def __init__(self, store: StoreSpec, tenants: TenantDirectory, run_id: str, prefix: str):
        super().__init__(store, tenants, run_id)
        self._prefix = prefix
        self._files = Metrics.counter(METRICS_NAMESPACE, "files_written")
        self._rows = Metrics.counter(METRICS_NAMESPACE, "rows_written")
        self._failed = Metrics.counter(METRICS_NAMESPACE, "files_failed")
        self._failed_rows = Metrics.counter(METRICS_NAMESPACE, "rows_failed")

    def setup(self):
        super().setup()
        self._worker = uuid.uuid4().hex[:8]
        self._count = 0

    def process(self, batch):
        partition, rows = batch
        self.write_file(partition, list(rows))
        return ()

    def write_file(self, partition: tuple[str, str, str], rows: list) -> bool:
        tenant = partition[0]
        self._count += 1
        name = f"part-{self._run_id}-{self._worker}-{int(time.time() * 1000)}-{self._count:06d}"
        key = index_file_key(partition, name, self._prefix)
        result = self._store_for(tenant).write(key, parquet_bytes(index_table(rows)),
                                               ObjectMetadata(content_type=PARQUET_MEDIA_TYPE))
        if result.ok:
            self._files.inc()
            self._rows.inc(len(rows))
            return True
        self._failed.inc()
        self._failed_rows.inc(len(rows))
        _LOG.error("the audit index file %s (%d rows of tenant %s) could not be written (%s); the objects "
                   "are archived: `message-archiver index rebuild` recreates their rows",
                   key, len(rows), tenant, result.error_class.value if result.error_class else "unknown")
        return False


class _WriteManifestFn(_TenantStoresFn):
    """The next manifest of a tenant's chain, for a batch of (key, sha256)."""

    _ATTEMPTS = 20  # other workers taking the next number this many times in a row: give up, loudly

    def __init__(self, store: StoreSpec, tenants: TenantDirectory, run_id: str):
        super().__init__(store, tenants, run_id)
        self._written = Metrics.counter(METRICS_NAMESPACE, "manifests_written")
        self._failed = Metrics.counter(METRICS_NAMESPACE, "manifests_failed")

    def setup(self):
        super().setup()
        self._heads: dict[str, tuple[int, str]] = {}  # tenant -> (last sequence, its chain hash)

    def process(self, batch):
        tenant, entries = batch
        self.append(tenant, entries)
        return ()

    def append(self, tenant: str, entries) -> None:
        """The tenant's next manifest, listing these (key, sha256)."""
        entries = sorted(set(entries))
        store = self._store_for(tenant)
        for _ in range(self._ATTEMPTS):
            sequence, previous = self._heads.get(tenant) or _chain_head(store, tenant)
            sequence += 1
            data = audit.manifest(tenant, sequence, previous, entries, _now_iso(), self._run_id)
            result = store.write(audit.manifest_key(tenant, sequence), data,
                                 ObjectMetadata(sha256=hashlib.sha256(data).hexdigest()))
            if result.ok and not result.existed:
                self._heads[tenant] = (sequence, json.loads(data)["chain"])
                self._written.inc()
                return
            if result.ok or result.error_class is ErrorClass.CONFLICT:  # the number was taken: read the head
                self._heads.pop(tenant, None)
                continue
            break
        self._failed.inc()
        _LOG.error("the manifest of %d objects of tenant %s could not be written (%s): the objects are "
                   "archived and indexed; `message-archiver verify` lists them as in no manifest",
                   len(entries), tenant, result.error_class.value if result.error_class else "unknown")


class _WriteBufferedFn(beam.DoFn):
    """A backfill's index: each worker keeps the rows of what it archived, and before
    its bundle ends (or at `rows_per_file` rows) writes them, a file per partition and
    a manifest per tenant. Memory stays bounded whatever the input's size (a
    GroupByKey would hold every row of the run); a retried bundle writes its rows
    again under new names, which readers fold."""

    def __init__(self, store: StoreSpec, tenants: TenantDirectory, run_id: str, prefix: str, rows_per_file: int):
        self._files = _WriteIndexFn(store, tenants, run_id, prefix)
        self._manifests = _WriteManifestFn(store, tenants, run_id)
        self._rows_per_file = rows_per_file

    def setup(self):
        self._files.setup()
        self._manifests.setup()

    def start_bundle(self):
        self._held: dict[tuple[str, str, str], list] = {}
        self._count = 0

    def process(self, row):
        self._held.setdefault(partition_of(row), []).append(row)
        self._count += 1
        if self._count >= self._rows_per_file:
            self._flush()
        return ()

    def finish_bundle(self):
        self._flush()

    def teardown(self):
        self._files.teardown()
        self._manifests.teardown()

    def _flush(self) -> None:
        held, self._held, self._count = self._held, {}, 0
        entries: dict[str, list] = {}
        for partition, rows in sorted(held.items()):
            self._files.write_file(partition, rows)
            entries.setdefault(partition[0], []).extend((row.key, row.sha256) for row in rows)
        for tenant, listed in sorted(entries.items()):
            self._manifests.append(tenant, listed)


def _chain_head(store: ObjectStore, tenant: str) -> tuple[int, str]:
    """(sequence, chain hash) of the tenant's last manifest, or (-1, GENESIS) for none."""
    folder = f"{store.root}/{audit.manifest_key(tenant, 0).rsplit('/', 1)[0]}"
    store.fs.invalidate_cache(folder)  # another worker may have added one since the last look
    try:
        names = store.fs.ls(folder, detail=False)
    except FileNotFoundError:
        names = []
    sequences = [s for s in (audit.manifest_sequence(str(n)) for n in names) if s is not None]
    if not sequences:
        return -1, audit.GENESIS
    last = max(sequences)
    body = json.loads(store.fs.cat_file(f"{store.root}/{audit.manifest_key(tenant, last)}"))
    return last, body["chain"]


def _now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="milliseconds")
