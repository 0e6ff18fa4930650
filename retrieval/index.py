"""The audit index: Parquet files beside the objects, one row per archived object (per frame of a batched one).

    rows (archive.audit.IndexRow) ──write_rows──> <index>/tenant=T/channel=C/date=D/part-<run>-<n>.parquet
    index_rebuild: Bucket.archive_objects() ── read_many ──┬─ a message's object: audit.index_row
                                                           └─ a batched object: frames.lines, a row per frame
                                                              (audit.batch_index_row) ──> write_rows (a new run's files)
    AuditIndex.load(bucket).find(person, campaign, dates, ...) ──pyarrow.dataset, filters pushed down──> rows

Hive-style partitions (tenant, channel, date) so a date range or a channel
reads only its folders; within a file the rows are sorted by recipient digest,
so Parquet's row-group statistics let a search for one person skip the rest.
Every run writes files under names of its own (its run id): no run replaces
another's. Two runs may index one object (a re-run, a rebuild beside the
pipeline's rows): readers keep one row per key (per key and byte_offset: the
frames of a batched object share its key), the latest archived_at. An index
file written before byte_offset existed reads with it empty.
`compact` merges a partition's small files into one and only then removes
the files it merged. Never a plaintext recipient: digests and ids only.
"""

from __future__ import annotations

import datetime as _dt
import time
import urllib.parse
from dataclasses import dataclass
from typing import Callable, Iterable

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from archive import frames
from archive.audit import (
    BATCH_ROOT, INDEX_PREFIX, INDEX_SCHEMA, PARTITIONS, ROWS_PER_FILE, IndexRow, Layout, Person,
    batch_compression, batch_index_row, index_file_key, index_row, index_table, parquet_bytes, parse_batch_key,
    parse_key, partition_of,
)
from archive.envelope import InvalidMessage
from archive.runs import new_run_id
from retrieval.bucket import Bucket

SCHEMA = INDEX_SCHEMA
_FILE_SCHEMA = pa.schema([INDEX_SCHEMA.field(name) for name in INDEX_SCHEMA.names if name not in PARTITIONS])
# A remote index up to this size is read whole, every file at once (one GET each), which
# beats a footer and column ranges per file, one after another, 20 ms each; past it, only
# the row groups a search can match are read.
BULK_READ_BYTES = 256 * 2 ** 20


def _partition_values(path: str) -> dict[str, str]:
    """{"tenant": ..., "channel": ..., "date": ...} from a file's hive folders, unescaped."""
    values = {}
    for part in path.split("/")[:-1]:
        name, _, value = part.partition("=")
        if name in PARTITIONS:
            values[name] = urllib.parse.unquote(value)
    return values


def iso_day(text: str) -> str:
    """A --since / --until day as yyyy-mm-dd (the index's date partitions); ValueError else."""
    try:
        return _dt.date.fromisoformat(text).isoformat()
    except ValueError:
        raise ValueError("expected a date as yyyy-mm-dd") from None


def when(millis: int | None) -> str:
    """A row's sent_at as people read it (UTC), or "?"."""
    if millis is None:
        return "?"
    return _dt.datetime.fromtimestamp(millis / 1000, _dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def write_rows(bucket: Bucket, rows: Iterable[IndexRow], run_id: str, prefix: str = INDEX_PREFIX) -> list[str]:
    """Write rows as Parquet files, one per partition (and per ROWS_PER_FILE rows),
    named for this run; the keys written."""
    groups: dict[tuple[str, str, str], list[IndexRow]] = {}
    for row in rows:
        groups.setdefault(partition_of(row), []).append(row)
    files: dict[str, bytes] = {}
    for partition, members in sorted(groups.items()):
        for start in range(0, len(members), ROWS_PER_FILE):
            key = index_file_key(partition, f"part-{run_id}-{len(files):05d}", prefix)
            files[key] = parquet_bytes(index_table(members[start:start + ROWS_PER_FILE]))
    bucket.create_many(files)
    return list(files)


@dataclass
class RebuildReport:
    objects: int = 0
    indexed: int = 0
    unreadable: int = 0          # a read failed
    not_archive: int = 0         # bytes that are not an archive object's JSON (or .eml); a batched
                                 # object's line that is not a message, or the object's unsound rest
    other_keys: int = 0          # under an archive prefix but in no layout
    files: int = 0
    seconds: float = 0.0
    batched_objects: int = 0     # of `objects`: batched ones, a row per frame


# A batched object is read whole to split it into frames: at most this many bytes of
# them are held at once.
BATCH_READ_BYTES = 256 * 2 ** 20


def rebuild(bucket: Bucket, tenant: str, run_id: str | None = None, workers: int = 32,
            prefix: str = INDEX_PREFIX, progress: Callable[[int, int], None] | None = None,
            batch_rows: int = 200_000, layouts: Iterable[Layout] | None = None,
            batch_tenants: Iterable[str] | None = None, foreign: Iterable[Layout] = ()) -> RebuildReport:
    """Index every archive object in the bucket by reading it (works on a bucket
    CleverTap or Braze filled): its key's fields (the seeds' layouts, and `layouts`,
    by default the bucket's), its payload's ids, its bytes' sha256; a batched object,
    a row per frame, each as the pipeline writes it (the tenant its key names; only
    `batch_tenants`' when given). A key only `foreign` layouts read (another tenant's
    template, in a destination tenants share) is that tenant's to index: left alone.
    Writes this run's files; never touches another run's."""
    started, report, run_id = time.monotonic(), RebuildReport(), run_id or new_run_id()
    layouts = bucket.layouts if layouts is None else tuple(layouts)
    foreign = tuple(layout for layout in foreign if layout not in layouts)
    prefixes = {layout.template.prefix for layout in foreign}
    only = None if batch_tenants is None else set(batch_tenants)
    parsed, batched = {}, {}
    for key, size in bucket.archive_objects(layouts + foreign):
        if key.startswith(BATCH_ROOT + "/"):
            fields = parse_batch_key(key)
            if fields is None:
                report.other_keys += 1
            elif only is None or fields.tenant in only:
                batched[key] = size
            continue
        fields = parse_key(key, layouts)
        if fields is not None:
            parsed[key] = fields
        elif key.split("/", 1)[0] in prefixes and parse_key(key, foreign) is not None:
            continue  # another tenant's
        else:
            report.other_keys += 1
    report.objects, report.batched_objects = len(parsed) + len(batched), len(batched)
    rows: list[IndexRow] = []
    done = 0

    def flush(force: bool = False):
        nonlocal rows
        if rows and (force or len(rows) >= batch_rows):
            report.files += len(write_rows(bucket, rows, f"{run_id}-{report.indexed:09d}", prefix))
            report.indexed += len(rows)
            rows = []

    for key, data in bucket.read_many(list(parsed), workers,
                                     progress and (lambda count: progress(count, report.objects))):
        done += 1
        if isinstance(data, BaseException):
            report.unreadable += 1
            continue
        try:
            row = index_row(parsed[key], data, tenant)
        except InvalidMessage:
            report.not_archive += 1
            continue
        rows.append(row)
        flush()
    for group in by_size(batched, BATCH_READ_BYTES):
        for key, data in bucket.read_many(group, min(workers, 8), chunk=len(group)):
            done += 1
            if isinstance(data, BaseException):
                report.unreadable += 1
            else:
                rows.extend(batch_rows_of(bucket, key, data, report))
            if progress:
                progress(done, report.objects)
            flush()
    flush(force=True)
    report.seconds = round(time.monotonic() - started, 3)
    return report


def batch_rows_of(bucket: Bucket, key: str, data: bytes, report: RebuildReport | None = None) -> list[IndexRow]:
    """The index row of each frame of a batched object, in order, as the pipeline
    writes them; a line that is not a message, or an unsound rest of the object (cut
    short, bytes appended), is counted in `report.not_archive` and has no row."""
    fields = parse_batch_key(key)
    compression, profile = batch_compression(fields), bucket.profile_of(fields.tenant)
    found = []
    try:
        for span, line in frames.lines(compression, data):
            try:
                found.append(batch_index_row(key, data[span.offset:span.end], span.offset, profile=profile,
                                             line=line))
            except InvalidMessage:
                if report is not None:
                    report.not_archive += 1
    except frames.CorruptObject:
        if report is not None:
            report.not_archive += 1
    return found


def by_size(sizes: dict[str, int], limit: int) -> list[list[str]]:
    """Keys in groups of at most `limit` bytes (a larger object is a group of its own)."""
    groups, current, total = [], [], 0
    for key, size in sizes.items():
        if current and total + size > limit:
            groups.append(current)
            current, total = [], 0
        current.append(key)
        total += size
    if current:
        groups.append(current)
    return groups


@dataclass
class CompactReport:
    partitions: int = 0          # partitions that had more than one file
    files_merged: int = 0
    files_written: int = 0
    rows: int = 0                # rows kept (one per key)
    duplicates_dropped: int = 0
    seconds: float = 0.0


def compact(bucket: Bucket, run_id: str | None = None, prefix: str = INDEX_PREFIX,
            progress: Callable[[int, int], None] | None = None) -> CompactReport:
    """Merge each partition's files into one (one row per key, the latest), written
    first; only then are the files it merged removed. A file written meanwhile (a
    stream's next flush) was not listed, so it is neither merged nor removed."""
    started, report, run_id = time.monotonic(), CompactReport(), run_id or new_run_id()
    index = AuditIndex(bucket, prefix)
    folders: dict[str, list[str]] = {}
    for key in index.files():
        folders.setdefault(key.rsplit("/", 1)[0], []).append(key)
    crowded = {folder: keys for folder, keys in folders.items() if len(keys) > 1}
    for done, (folder, keys) in enumerate(sorted(crowded.items()), 1):
        table = index.dataset(keys).to_table(columns=list(INDEX_SCHEMA.names))
        kept = latest_per_key(table)
        ordered = kept.sort_by([("recipient_md5", "ascending"), ("key", "ascending")]).select(
            [n for n in INDEX_SCHEMA.names if n not in PARTITIONS])
        bucket.create(f"{folder}/compact-{run_id}.parquet", parquet_bytes(ordered))
        for key in keys:
            bucket.remove(key)
        report.partitions += 1
        report.files_merged += len(keys)
        report.files_written += 1
        report.rows += kept.num_rows
        report.duplicates_dropped += table.num_rows - kept.num_rows
        if progress:
            progress(done, len(crowded))
    report.seconds = round(time.monotonic() - started, 3)
    return report


class AuditIndex:
    """The index of one destination, read with pyarrow.dataset."""

    def __init__(self, bucket: Bucket, prefix: str = INDEX_PREFIX):
        self.bucket, self.prefix = bucket, prefix
        # a folder through Arrow's own filesystem; a store through its fsspec client (the
        # transport checks were made on it), many files and byte ranges at once
        self.filesystem = pafs.LocalFileSystem() if bucket.local else pafs.PyFileSystem(pafs.FSSpecHandler(bucket.fs))
        self._scan = {} if bucket.local else _SCAN
        self.base = bucket.path(prefix)

    def files(self) -> list[str]:
        """The index's Parquet files, as keys."""
        return [key for key, _ in self.bucket.objects(self.prefix) if key.endswith(".parquet")]

    def dataset(self, files: list[str] | None = None) -> ds.Dataset | None:
        paths = [self.bucket.path(key) for key in (self.files() if files is None else files)]
        if not paths:
            return None
        return ds.dataset(paths, schema=SCHEMA, filesystem=self.filesystem, format="parquet",
                          partitioning=ds.partitioning(pa.schema([(name, pa.string()) for name in PARTITIONS]),
                                                       flavor="hive"),
                          partition_base_dir=self.base)

    def find(self, person: Person | None = None, *, campaign_id: str | None = None, tenant: str | None = None,
             channel: str | None = None, since: str | None = None, until: str | None = None,
             message_id: str | None = None, key: str | None = None, byte_offset: int | None = None) -> pa.Table:
        """Rows matching every given condition (a person matches on any of their
        digests or ids), one per object key (per frame of a batched object), ordered by
        sent_at. `since` and `until` are dates (yyyy-mm-dd), both included."""
        condition = _conditions(person, campaign_id, tenant, channel, since, until, message_id, key, byte_offset)
        files = [(k, size) for k, size in self.bucket.objects(self.prefix) if k.endswith(".parquet")]
        if not files:
            return SCHEMA.empty_table()
        if self.bucket.local or sum(size for _, size in files) > BULK_READ_BYTES:
            table = self.dataset([k for k, _ in files]).to_table(columns=list(SCHEMA.names), filter=condition,
                                                                 **self._scan)
        else:  # a store far away: every file whole, many at once, filtered here
            table = self._fetched([k for k, _ in files], condition)
        return latest_per_key(table).sort_by([("sent_at_ms", "ascending"), ("key", "ascending"),
                                              ("byte_offset", "ascending")])

    def _fetched(self, keys: list[str], condition) -> pa.Table:
        tables = []
        for key, data in self.bucket.read_many(keys):
            if isinstance(data, BaseException):
                raise data
            table = pq.read_table(pa.BufferReader(data), schema=_FILE_SCHEMA)
            values = _partition_values(key[len(self.prefix) + 1:])
            for name in PARTITIONS:
                table = table.append_column(name, pa.array([values.get(name)] * table.num_rows, pa.string()))
            table = table.select(list(SCHEMA.names))
            tables.append(table.filter(condition) if condition is not None else table)
        return pa.concat_tables(tables) if tables else SCHEMA.empty_table()

    def rows_by_file(self, person: Person, keys: Iterable[str] = ()) -> dict[str, pa.Table]:
        """For erasure: each index file holding a row of this person, or a row of one of
        `keys` (batched objects rewritten: their other frames moved), with those rows."""
        found = {}
        condition = _conditions(person, None, None, None, None, None, None)
        keys = sorted(set(keys))
        if keys:
            condition = condition | pc.field("key").isin(keys)
        for key in self.files():
            dataset = self.dataset([key])
            table = dataset.to_table(filter=condition)
            if table.num_rows:
                found[key] = table
        return found


# Many files at once, each read in as few requests as its byte ranges allow: a store
# 20 ms away answers a file's footer and its columns in parallel, not one after another.
_SCAN = {"fragment_readahead": 64, "batch_readahead": 4,
         "fragment_scan_options": ds.ParquetFragmentScanOptions(pre_buffer=True)}


def latest_per_key(table: pa.Table) -> pa.Table:
    """One row per key and byte_offset (a batched object's frames share its key), the
    latest archived (a rebuild's rows have no archived_at: the pipeline's win)."""
    if table.num_rows == 0:
        return table
    framed = "byte_offset" in table.column_names
    order = table.sort_by([("key", "ascending")] + ([("byte_offset", "ascending")] if framed else [])
                          + [("archived_at_ms", "descending")])
    keys = order.column("key").to_pylist()
    offsets = order.column("byte_offset").to_pylist() if framed else [None] * len(keys)
    ids = list(zip(keys, offsets))
    keep = [i for i in range(len(ids)) if i == 0 or ids[i] != ids[i - 1]]
    return order.take(pa.array(keep, pa.int64())) if len(keep) != len(keys) else order


def _conditions(person, campaign_id, tenant, channel, since, until, message_id, key=None, byte_offset=None):
    clauses = []
    if person:
        either = []
        for column in ("recipient_md5", "push_token_md5", "user_id", "external_id"):
            values = getattr(person, column)
            if values:
                either.append(pc.field(column).isin(sorted(values)))
        clause = either[0]
        for other in either[1:]:
            clause = clause | other
        clauses.append(clause)
    for column, value in (("campaign_id", campaign_id), ("tenant", tenant), ("channel", channel),
                          ("message_id", message_id), ("key", key), ("byte_offset", byte_offset)):
        if value is not None:
            clauses.append(pc.field(column) == value)
    if since:
        clauses.append(pc.field("date") >= since)
    if until:
        clauses.append(pc.field("date") <= until)
    if not clauses:
        return None
    condition = clauses[0]
    for clause in clauses[1:]:
        condition = condition & clause
    return condition
