"""One destination, opened for reading back: list, read, and the few writes retrieval makes.

    --destination URL, --storage_options JSON ──Destination──check_transport──> fsspec filesystem + root
    Bucket.objects()  ──> (key, size) under sent_messages/, keys relative to the destination
    Bucket.archive_objects() ──> (key, size) under every archive prefix: sent_messages/, each
        key template's prefix (Bucket.layouts), sent_batches/
    Bucket.read(key) ──> bytes (fsspec) · read_many(keys) ──> bytes, many at once (obstore where
        archive.direct allows, else the fsspec client's own loop; a folder: a few threads)
    Bucket.read_range(key, offset, length) ──> one frame of a batched object (a byte-range GET)
        · read_ranges([(key, offset, length)]) ──> many at once, as read_many
    Bucket.create(key, data) (refuses an existing key) · Bucket.remove(key) (erase only)
    Bucket.replace(key, data) (a manifest tombstoned, a batched object without a person's frames)

The same transport rules as the pipeline's: only object-store protocols and
local folders, plain HTTP to loopback only unless the user allows it, checked
before any connection and again against the client that was built. Reads keep
the client's own retries (a read changes nothing, so retrying it is safe).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import datetime as _dt
import os
import uuid
from typing import Any, Callable, Iterable, Iterator, Mapping

import fsspec
import fsspec.asyn
from fsspec.implementations.local import LocalFileSystem

from archive import backends, direct
from archive.audit import BATCH_ROOT, ROOT, Layout
from archive.tenants import Destination, check_transport, redact_url


READ_CONCURRENCY = 64


def _client_options(destination: Destination) -> dict[str, Any]:
    """The user's storage options; on S3, enough pooled connections for READ_CONCURRENCY
    reads at once (botocore pools 10 unless told more). The client's own retries stay on."""
    options = dict(destination.storage_options)
    if destination.protocol in ("s3", "s3a"):
        config = dict(options.get("config_kwargs") or {})
        config.setdefault("max_pool_connections", READ_CONCURRENCY)
        options["config_kwargs"] = config
    return options


async def _read_all(read, paths: list[str], workers: int) -> list:
    """Each path's bytes (or its exception), `workers` GETs at once on the client's own loop."""
    gate = asyncio.Semaphore(workers)

    async def one(path: str):
        async with gate:
            try:
                return bytes(await read(path))
            except Exception as exc:  # noqa: BLE001 - reported per key by the caller
                return exc
    return await asyncio.gather(*(one(path) for path in paths))


def _range_error(exc: BaseException) -> bool:
    """A range that starts past the object's end (HTTP 416): the bytes are not there."""
    text = str(exc)
    return "InvalidRange" in text or "not satisfiable" in text.lower() or "status code: 416" in text


class Bucket:
    """One destination. `layouts` are the key templates its objects may be laid out by
    (archive.audit.Layout: a tenant file's, or --key_template and --profile), read back
    wherever a key is; `profiles` is the profile of each tenant's batched objects (a
    tenant file's), else `profile` (--profile), else the payload tells."""

    def __init__(self, url: str, storage_options: Mapping[str, Any] | None = None,
                 allow_insecure_http: bool = False, destination: Destination | None = None,
                 layouts: Iterable[Layout] = (), profiles: Mapping[str, str] | None = None,
                 profile: str | None = None):
        self.layouts: tuple[Layout, ...] = tuple(layouts)
        self.tenant_layouts: dict[str, tuple[Layout, ...]] = {}  # a tenant file's: each tenant's own
        self.profiles: dict[str, str] = dict(profiles or {})
        self.profile = profile
        self.destination = destination or Destination(url, dict(storage_options or {}), True, allow_insecure_http)
        self.where = f"destination {redact_url(self.destination.url)}"
        check_transport(self.destination, self.where)
        self.fs, root = fsspec.core.url_to_fs(self.destination.url, **_client_options(self.destination))
        backends.check_client_transport(self.fs, self.destination, self.where)
        self.root = root.rstrip("/")
        self.local = isinstance(self.fs, LocalFileSystem)
        # s3fs asks for an object's size (a HEAD) before every whole-object GET, to split
        # large ones; archive objects are small: one GET each
        self._read_options = {"max_concurrency": 1} if self.destination.protocol in ("s3", "s3a") else {}
        # Bulk reads (verify, rebuild, export) through obstore where the destination allows, as
        # the pipeline writes: a GET costs a fraction of the CPU (archive.direct says when not)
        try:
            self._direct = direct.plan(self.destination).open()
        except direct.NotDirect:
            self._direct = None
        self.url = redact_url(self.destination.url).rstrip("/")

    def path(self, key: str) -> str:
        return f"{self.root}/{key}" if self.root else key

    def key_of(self, path: str) -> str:
        prefix = f"{self.root}/" if self.root else ""
        return path[len(prefix):] if path.startswith(prefix) else path

    def objects(self, prefix: str = ROOT) -> Iterator[tuple[str, int]]:
        """Every object under `prefix` (a key prefix), as (key, size), in key order."""
        if self._direct is not None:
            try:
                listed = sorted(self._direct.list(prefix))
            except direct.DirectStoreError as exc:
                if "invalid path" not in str(exc).lower():
                    raise
                listed = None  # a key obstore will not parse ('..' in it): the fsspec listing takes any key
            if listed is not None:
                yield from listed
                return
        top = self.path(prefix)
        try:
            found = self.fs.find(top, detail=True)
        except FileNotFoundError:
            return
        for path, info in sorted(found.items()):
            if info.get("type", "file") != "directory":
                yield self.key_of(path), int(info.get("size") or 0)

    def archive_prefixes(self, layouts: Iterable[Layout] = ()) -> list[str]:
        """Where archive objects may be: the seeds' folder, each key template's prefix
        (the bucket's, and `layouts`), and the batched objects' folder."""
        found = [ROOT]
        for layout in (*self.layouts, *layouts):
            if layout.template.prefix not in found:
                found.append(layout.template.prefix)
        return found + ([BATCH_ROOT] if BATCH_ROOT not in found else [])

    def archive_objects(self, layouts: Iterable[Layout] = ()) -> Iterator[tuple[str, int]]:
        """(key, size) of every object under every archive prefix."""
        for prefix in self.archive_prefixes(layouts):
            yield from self.objects(prefix)

    def profile_of(self, tenant: str) -> str | None:
        """The profile of a tenant's batched objects, when known (else the payload tells)."""
        return self.profiles.get(tenant) or self.profile

    def read(self, key: str) -> bytes:
        return self.fs.cat_file(self.path(key), **self._read_options)

    def read_range(self, key: str, offset: int, length: int) -> bytes:
        """The bytes [offset, offset + length) of an object (one frame of a batched object),
        with one byte-range GET; fewer (or none) when the object ends sooner.
        FileNotFoundError when there is no object."""
        if length <= 0:
            return b""
        if self._direct is not None:
            return fsspec.asyn.sync(fsspec.asyn.get_loop(), self._direct_range, key, offset, length)
        return self._fs_range(key, offset, length)

    def _fs_range(self, key: str, offset: int, length: int) -> bytes:
        try:
            return bytes(self.fs.cat_file(self.path(key), start=offset, end=offset + length))
        except FileNotFoundError:
            raise
        except OSError as exc:
            if _range_error(exc) and self.fs.exists(self.path(key)):
                return b""
            raise

    async def _direct_range(self, key: str, offset: int, length: int) -> bytes:
        try:
            got = await self._direct._obstore.get_range_async(
                self._direct._store, self._direct.location(key), start=offset, length=length)
            return bytes(got)
        except Exception as exc:  # noqa: BLE001 - translated as the store's own errors are
            if isinstance(exc, FileNotFoundError) or "NoSuchKey" in str(exc) or "BlobNotFound" in str(exc):
                raise FileNotFoundError(key) from None
            if _range_error(exc):
                return b""
            raise direct.translate(exc) from None

    def read_ranges(self, ranges: Iterable[tuple[str, int, int]], workers: int = READ_CONCURRENCY,
                    progress: Callable[[int], None] | None = None,
                    ) -> Iterator[tuple[tuple[str, int, int], bytes | BaseException]]:
        """((key, offset, length), bytes) for each range, `workers` reads at once; a read
        that fails yields its exception, as read_many."""
        ranges = list(ranges)
        chunk = max(workers * 16, 256)
        done = 0
        for start in range(0, len(ranges), chunk):
            part = ranges[start:start + chunk]
            if self._direct is not None:
                found = fsspec.asyn.sync(fsspec.asyn.get_loop(), _read_all,
                                         lambda item: self._direct_range(*item), part, workers)
                results = list(zip(part, found))
            elif getattr(self.fs, "async_impl", False):
                async def one(item):
                    key, offset, length = item
                    try:
                        return await self.fs._cat_file(self.path(key), start=offset, end=offset + length)
                    except FileNotFoundError:
                        raise
                    except OSError as exc:
                        if _range_error(exc) and await self.fs._exists(self.path(key)):
                            return b""
                        raise
                found = fsspec.asyn.sync(self.fs.loop, _read_all, one, part, workers)
                results = list(zip(part, found))
            else:
                with concurrent.futures.ThreadPoolExecutor(max_workers=min(8, workers),
                                                           thread_name_prefix="retrieval-read") as pool:
                    results = list(pool.map(self._range_or_error, part))
            yield from results
            done += len(part)
            if progress:
                progress(done)

    def _range_or_error(self, item: tuple[str, int, int]):
        try:
            return item, self.read_range(*item)
        except Exception as exc:  # noqa: BLE001 - reported per range by the caller
            return item, exc

    def exists(self, key: str) -> bool:
        return self.fs.exists(self.path(key))

    def read_many(self, keys: Iterable[str], workers: int = READ_CONCURRENCY,
                  progress: Callable[[int], None] | None = None,
                  chunk: int | None = None) -> Iterator[tuple[str, bytes | BaseException]]:
        """(key, bytes) for each key, `workers` reads at once; a read that fails yields
        its exception instead of ending the others. An async client (S3, GCS, Azure)
        reads as coroutines on its own loop, a chunk at a time (`chunk` keys held at
        once; large objects want a small one); a local folder, in a few threads."""
        keys = list(keys)
        chunk = chunk or max(workers * 16, 256)
        done = 0
        for start in range(0, len(keys), chunk):
            part = keys[start:start + chunk]
            if self._direct is not None:
                found = fsspec.asyn.sync(fsspec.asyn.get_loop(), _read_all, self._direct_read, part, workers)
                results = list(zip(part, found))
            elif getattr(self.fs, "async_impl", False):
                found = fsspec.asyn.sync(self.fs.loop, _read_all, functools.partial(
                    self.fs._cat_file, **self._read_options), [self.path(k) for k in part], workers)
                results = list(zip(part, found))
            else:
                with concurrent.futures.ThreadPoolExecutor(max_workers=min(8, workers),
                                                           thread_name_prefix="retrieval-read") as pool:
                    results = list(pool.map(self._read_or_error, part))
            for result in results:
                yield result
            done += len(part)
            if progress:
                progress(done)

    async def _direct_read(self, key: str) -> bytes:
        try:
            return await self._direct.cat(key)
        except direct.DirectStoreError as exc:  # a missing key is missing, as on the fsspec path
            if exc.status == 404 or exc.error_code == "NoSuchKey" or exc.error_code == "BlobNotFound":
                raise FileNotFoundError(key) from None
            raise

    def _read_or_error(self, key: str) -> tuple[str, bytes | BaseException]:
        try:
            return key, self.read(key)
        except Exception as exc:  # noqa: BLE001 - reported per key by the caller
            return key, exc

    def create(self, key: str, data: bytes) -> None:
        """Write a new object; FileExistsError when the key holds one already.
        Retrieval's own files (index, manifests, erasure records) are named so
        that no two runs share a key, and this refuses to replace one if they did."""
        path = self.path(key)
        if self.local:
            folder = os.path.dirname(path)
            os.makedirs(folder, exist_ok=True)
            temporary = os.path.join(folder, f".{os.path.basename(path)}.{uuid.uuid4().hex}.tmp")
            with open(temporary, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            try:
                os.link(temporary, path)  # fails on an existing name: never a replacement
            finally:
                os.unlink(temporary)
            return
        if self.fs.exists(path):
            raise FileExistsError(f"{key} exists")
        self.fs.pipe_file(path, data)

    def create_many(self, files: dict[str, bytes], workers: int = READ_CONCURRENCY) -> None:
        """Write new files, `workers` at once on a store. Their names are new (a fresh
        run id in each), so a store is not asked first whether each exists; a folder
        still refuses an existing name."""
        if not getattr(self.fs, "async_impl", False):
            for key, data in files.items():
                self.create(key, data)
            return
        self.fs.pipe({self.path(key): data for key, data in files.items()}, batch_size=workers)

    def remove(self, key: str) -> None:
        """Remove retrieval's own file (an index file it has rewritten)."""
        self.fs.rm_file(self.path(key))

    def erase(self, key: str) -> tuple[int, str | None]:
        """Remove an archive object for good: every version of it where the store
        keeps versions (an S3 bucket with Object Lock or versioning keeps the bytes
        behind a plain DELETE's delete marker). Returns (versions removed, None),
        or (versions removed, why the rest were left): a legal hold, a retention
        date in force, or the store's refusal. A version under lock is never
        touched: its lock is read first, and the store would refuse it anyway."""
        if self.destination.protocol in ("s3", "s3a"):
            return self._erase_s3(key)
        try:
            self.fs.rm_file(self.path(key))
        except FileNotFoundError:
            return 0, None
        except PermissionError:
            return 0, "refused by the store"
        return 1, None

    def _erase_s3(self, key: str) -> tuple[int, str | None]:
        bucket, _, object_key = self.path(key).partition("/")
        plain = {"Bucket": bucket, "Key": object_key}
        status = self.fs.call_s3("get_bucket_versioning", Bucket=bucket).get("Status")
        if status not in ("Enabled", "Suspended"):  # one copy: the object itself
            if not self.fs.exists(self.path(key)):
                return 0, None
            targets = [plain]
        else:  # every version and delete marker of exactly this key
            listed = self.fs.call_s3("list_object_versions", Bucket=bucket, Prefix=object_key)
            targets = [{**plain, "VersionId": v["VersionId"], "_object": "ETag" in v}
                       for v in listed.get("Versions", []) + listed.get("DeleteMarkers", [])
                       if v["Key"] == object_key]
        removed = 0
        for target in targets:
            is_object = target.pop("_object", True)
            lock = self._s3_lock(target) if is_object else None
            if lock:
                return removed, lock
            try:
                self.fs.call_s3("delete_object", **target)
            except PermissionError:
                return removed, "refused by the store"
            removed += 1
        return removed, None

    def lock_of(self, key: str) -> str | None:
        """Why an object's bytes cannot all be removed now (a legal hold, or a retention
        date in force on any of its S3 versions), else None: asked before a batched
        object is rewritten without a person's frames, so that a locked one is left
        whole rather than rewritten with its old version kept behind the new."""
        if self.destination.protocol not in ("s3", "s3a"):
            return None
        bucket, _, object_key = self.path(key).partition("/")
        plain = {"Bucket": bucket, "Key": object_key}
        if self.fs.call_s3("get_bucket_versioning", Bucket=bucket).get("Status") not in ("Enabled", "Suspended"):
            return self._s3_lock(plain)
        listed = self.fs.call_s3("list_object_versions", Bucket=bucket, Prefix=object_key)
        for version in listed.get("Versions", []):
            if version["Key"] == object_key:
                lock = self._s3_lock({**plain, "VersionId": version["VersionId"]})
                if lock:
                    return lock
        return None

    def _s3_lock(self, target: dict) -> str | None:
        try:
            head = self.fs.call_s3("head_object", **target)
        except FileNotFoundError:
            return None
        if str(head.get("ObjectLockLegalHoldStatus", "")).upper() == "ON":
            return "legal hold"
        until = head.get("ObjectLockRetainUntilDate")
        if until is not None and until > _dt.datetime.now(_dt.timezone.utc):
            return f"retention until {until.isoformat()}"
        return None

    def replace(self, key: str, data: bytes) -> str | None:
        """Overwrite one of retrieval's own records in place (a manifest whose entries
        were tombstoned): the new bytes, then every older S3 version removed, so the
        old text does not live on behind the new. Returns why an old version was
        left (a lock), or None. A folder's file is replaced whole (a new file renamed over
        it), never left half written."""
        if self.local:
            path = self.path(key)
            temporary = os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.{uuid.uuid4().hex}.tmp")
            with open(temporary, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, path)
            return None
        self.fs.pipe_file(self.path(key), data)
        if self.destination.protocol not in ("s3", "s3a"):
            return None
        bucket, _, object_key = self.path(key).partition("/")
        if self.fs.call_s3("get_bucket_versioning", Bucket=bucket).get("Status") not in ("Enabled", "Suspended"):
            return None
        listed = self.fs.call_s3("list_object_versions", Bucket=bucket, Prefix=object_key)
        for version in listed.get("Versions", []):
            if version["Key"] != object_key or version.get("IsLatest"):
                continue
            target = {"Bucket": bucket, "Key": object_key, "VersionId": version["VersionId"]}
            lock = self._s3_lock(target)
            if lock:
                return lock
            try:
                self.fs.call_s3("delete_object", **target)
            except PermissionError:
                return "refused by the store"
        return None

    def hold(self, key: str, on: bool) -> None:
        """S3 Object Lock legal hold on (or off) an object's current version."""
        if self.destination.protocol not in ("s3", "s3a"):
            raise NotImplementedError("legal hold is implemented for S3 destinations")
        bucket, _, object_key = self.path(key).partition("/")
        self.fs.call_s3("put_object_legal_hold", Bucket=bucket, Key=object_key,
                        LegalHold={"Status": "ON" if on else "OFF"})
