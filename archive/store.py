"""The object store: puts archive objects under a destination URL through fsspec.

Many writes are in flight at once: on an async backend (s3fs, gcsfs, adlfs)
each write is a coroutine on fsspec's I/O loop, and `submit_many` starts a
whole batch with one wake-up of that loop; on another sync filesystem
(memory://, ...) each runs in a small thread pool. Local disk is written
inline, in the caller's thread: a write to the page cache is CPU work in the
kernel, which a thread cannot hide, and handing it to one costs more than the
write (bench/README.md has the measurements). `submit` blocks once
`max_in_flight` writes are pending, which is the back-pressure a DoFn needs.
Each write follows the retry policy, passes the destination's circuit breaker,
and ends in one `WriteResult`, never an exception. How a write carries
metadata and compliance options to each cloud is in `archive.backends`.

On S3 and Azure the write itself goes, where the destination allows, straight
through obstore (`archive.direct`, a Rust client: a fifth of s3fs' CPU per
object), awaited on the same I/O loop; the rest (Object Lock, GCS, options
obstore lacks) goes through the fsspec filesystem. Each store logs which and
why. The breaker, the retry policy and the conditional create are the same on
both paths.

Writes create, they do not overwrite (unless `overwrite`): a conditional PUT
(S3 If-None-Match, GCS ifGenerationMatch=0, Azure without overwrite, a hard
link on local disk) refuses a key that already holds an object; the store
then reads that object and compares. The same bytes are a success that says
the object already existed (a replay, a re-run after a crash); other bytes are
a CONFLICT failure: two different messages with one key never replace each
other silently.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import random
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Sequence

import fsspec
import fsspec.asyn
from fsspec.implementations.local import LocalFileSystem

from archive import backends, direct
from archive.breaker import CircuitBreaker, CircuitOpen, OutageClock
from archive.errors import TRANSIENT, ErrorClass, classify, describe
from archive.retry import RetryPolicy
from archive.tenants import Destination, check_transport, redact_url

_LOG = logging.getLogger(__name__)
_KNOWN_FOLDERS = 65536  # a long backfill makes millions of folders: remember a bounded few


@dataclass(frozen=True)
class StoreSpec:
    """What a worker needs to open the store: picklable, no live clients.

    `destination` is a URL (with `storage_options`) or a tenant's Destination,
    which also carries its compliance options.
    """

    destination: str | Destination
    storage_options: dict[str, Any] = field(default_factory=dict, repr=False)
    max_in_flight: int = 64
    retry: RetryPolicy = RetryPolicy()
    breaker_cooldown: float = 30.0     # seconds a destination that refused our credentials rests
    overwrite: bool = False            # replace an existing object with other bytes (else CONFLICT)
    client: str = "auto"               # auto | direct | fsspec: see archive.direct

    def resolved(self) -> Destination:
        if isinstance(self.destination, Destination):
            return self.destination
        return Destination(self.destination, dict(self.storage_options), default=True)

    def for_destination(self, destination: Destination) -> "StoreSpec":
        """The same write settings for another destination."""
        return StoreSpec(destination, {}, self.max_in_flight, self.retry, self.breaker_cooldown, self.overwrite,
                         self.client)

    def open(self) -> "ObjectStore":
        return ObjectStore(self)


class TenantStores:
    """One open ObjectStore per tenant (each with its own breaker), opened on first use:
    what a worker holds between its setup and teardown."""

    def __init__(self, spec: StoreSpec, tenants):
        self._spec, self._tenants = spec, tenants  # tenants: archive.tenants.TenantDirectory
        self._open: dict[str, ObjectStore] = {}

    def __call__(self, tenant_name: str) -> "ObjectStore":
        store = self._open.get(tenant_name)
        if store is None:
            tenant = self._tenants.lookup(tenant_name)  # a known tenant: its messages were prepared
            store = self._open[tenant_name] = self._spec.for_destination(tenant.destination).open()
        return store

    def close(self) -> None:
        for store in self._open.values():
            store.close()
        self._open.clear()


@dataclass(frozen=True)
class WriteResult:
    url: str
    attempts: int
    latency_ms: float
    error: BaseException | None = None
    error_class: ErrorClass | None = None
    existed: bool = False    # the key already held exactly these bytes: nothing was replaced

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True)
class ObjectMetadata:
    content_type: str = "application/json"
    content_encoding: str | None = None
    sha256: str | None = None            # hex digest of the object's bytes
    compression: str | None = None       # codec name, kept as user metadata

    # A frozen dataclass's own __init__ sets each field with object.__setattr__; one
    # update of the instance's dict does the same at a third of the cost (one per message).
    def __init__(self, content_type: str = "application/json", content_encoding: str | None = None,
                 sha256: str | None = None, compression: str | None = None):
        self.__dict__.update(content_type=content_type, content_encoding=content_encoding, sha256=sha256,
                             compression=compression)


class ObjectStore:
    def __init__(self, spec: StoreSpec):
        if spec.max_in_flight < 1:
            raise ValueError("max_in_flight must be at least 1")
        self.spec = spec
        self.destination = spec.resolved()
        # Again on the worker, whose environment and AWS config may differ from the launcher's.
        where = f"destination {redact_url(self.destination.url)}"
        check_transport(self.destination, where)
        self.fs, self.root = fsspec.core.url_to_fs(
            self.destination.url, **backends.client_options(self.destination, spec.max_in_flight))
        backends.check_client_transport(self.fs, self.destination, where)
        self.root = self.root.rstrip("/")
        self.backend = backends.for_filesystem(self.fs, self.destination)
        self.direct = _open_direct(self.destination, spec.client, where)
        self.breaker = CircuitBreaker(spec.breaker_cooldown)
        self.outage = OutageClock()
        self._local = isinstance(self.fs, LocalFileSystem)
        self._async = self.direct is not None or bool(getattr(self.fs, "async_impl", False))
        self._loop = (fsspec.asyn.get_loop() if self.direct is not None else self.fs.loop) if self._async else None
        self._pool = None if self._async or self._local else concurrent.futures.ThreadPoolExecutor(
            max_workers=min(spec.max_in_flight, 16), thread_name_prefix="archive-store")
        # One lock for every write's slot and end: a write's end costs one acquire, not a
        # concurrent.futures.Future (with its own Condition) and a semaphore release.
        self._settled = threading.Condition(threading.Lock())
        self._in_flight = 0   # writes started and not yet ended
        self._waiting = 0     # threads waiting for a slot or for a result
        self._dirs: set[str] = set()  # local folders known to exist
        self._rng = random.Random()

    @property
    def writes_inline(self) -> bool:
        """True when `write` runs in the caller's thread (local disk) and no
        future is worth making."""
        return self._local

    def url(self, key: str) -> str:
        return self.fs.unstrip_protocol(f"{self.root}/{key}")

    def submit(self, key: str, data: bytes, metadata: ObjectMetadata = ObjectMetadata()) -> "WriteFuture":
        """Start writing `data` at `key`; the future resolves to a WriteResult."""
        return self.submit_many([(key, data, metadata)])[0]

    def submit_many(self, writes: Sequence[tuple[str, bytes, ObjectMetadata]]) -> list["WriteFuture"]:
        """Start each (key, data, metadata) write; one future (of a WriteResult) each,
        in order. On an async backend a batch costs one wake-up of the I/O loop.
        Blocks while `max_in_flight` writes are pending, having first started
        those of the batch that already have their slot."""
        futures: list[WriteFuture] = []
        ready: list[tuple[tuple[str, bytes, ObjectMetadata], WriteFuture]] = []
        limit, settled = self.spec.max_in_flight, self._settled
        for write in writes:
            with settled:
                free = self._in_flight < limit
                if free:
                    self._in_flight += 1
            if not free:
                self._start(ready)  # these hold slots: they must run for any to free
                ready = []
                with settled:
                    self._waiting += 1
                    try:
                        while self._in_flight >= limit:
                            settled.wait()
                    finally:
                        self._waiting -= 1
                    self._in_flight += 1
            future = WriteFuture(self)
            futures.append(future)
            ready.append((write, future))
        self._start(ready)
        return futures

    def _start(self, ready) -> None:
        if not ready:
            return
        if self._async:
            self._loop.call_soon_threadsafe(self._start_tasks, ready)
        elif self._local:
            for (key, data, _), future in ready:
                self._settle(future, self._write_sync(key, data))
        else:
            for (key, data, _), future in ready:
                self._pool.submit(self._write_settled_sync, future, key, data)

    def _start_tasks(self, ready) -> None:
        """On the I/O loop: one task per write, each settling its caller's future."""
        create_task = self._loop.create_task
        for (key, data, metadata), future in ready:
            create_task(self._write_settled(future, key, data, metadata))

    async def _write_settled(self, future: "WriteFuture", key: str, data: bytes, metadata: ObjectMetadata) -> None:
        try:
            result = await self._write(key, data, metadata)
        except BaseException as exc:  # _write returns results; a cancellation, or a bug's last resort
            self._settle(future, error=exc)
            if not isinstance(exc, Exception):
                raise
            return
        self._settle(future, result)

    def _write_settled_sync(self, future: "WriteFuture", key: str, data: bytes) -> None:
        try:
            result = self._write_sync(key, data)
        except BaseException as exc:  # _write_sync returns results; this is a bug's last resort
            self._settle(future, error=exc)
            return
        self._settle(future, result)

    def _settle(self, future: "WriteFuture", result: WriteResult | None = None,
                error: BaseException | None = None) -> None:
        """From any thread: the write's end frees its slot and wakes whoever waits."""
        future._result, future._error = result, error
        future._done = True
        with self._settled:
            self._in_flight -= 1
            if self._waiting:
                self._settled.notify_all()

    def _wait(self, future: "WriteFuture", timeout: float | None) -> None:
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._settled:
            self._waiting += 1
            try:
                while not future._done:
                    remaining = None if deadline is None else deadline - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        raise TimeoutError("the write has not ended")
                    self._settled.wait(remaining)
            finally:
                self._waiting -= 1

    def write(self, key: str, data: bytes, metadata: ObjectMetadata = ObjectMetadata()) -> WriteResult:
        """Write and wait for the result."""
        if self._local:
            return self._write_sync(key, data)
        return self.submit(key, data, metadata).result()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)

    async def _write(self, key: str, data: bytes, metadata: ObjectMetadata) -> WriteResult:
        path = f"{self.root}/{key}"
        attempt = _Attempt(self, self.fs.unstrip_protocol(path))
        refused = attempt.begin()
        if refused is not None:
            return refused
        while True:
            try:
                try:
                    if self.direct is not None:
                        await self.direct.put(key, data, metadata, create_only=not self.spec.overwrite)
                    else:
                        await self.backend.put(self.fs, path, data, metadata, create_only=not self.spec.overwrite)
                except FileExistsError:
                    existing = (await self.direct.cat(key) if self.direct is not None
                                else await self.fs._cat_file(path))
                    return attempt.found(existing, data)
                return attempt.succeeded()
            except asyncio.CancelledError:
                attempt.abandoned()
                raise
            except Exception as exc:  # every store error becomes a classified result
                result, delay = attempt.failed(exc)
                if result is not None:
                    return result
                await asyncio.sleep(delay)

    def _write_sync(self, key: str, data: bytes) -> WriteResult:
        path = f"{self.root}/{key}"
        attempt = _Attempt(self, self.fs.unstrip_protocol(path))
        refused = attempt.begin()
        if refused is not None:
            return refused
        while True:
            try:
                try:
                    self._put_sync(path, data)
                except FileExistsError:
                    return attempt.found(self.fs.cat_file(path), data)
                return attempt.succeeded()
            except Exception as exc:  # every store error becomes a classified result
                result, delay = attempt.failed(exc)
                if result is not None:
                    return result
                time.sleep(delay)

    def _put_sync(self, path: str, data: bytes) -> None:
        if self._local:
            self._put_local(path, data)
        else:
            if not self.spec.overwrite and self.fs.exists(path):
                raise FileExistsError(path)
            self.fs.pipe_file(path, data)

    def _put_local(self, path: str, data: bytes) -> None:
        """The object appears whole or not at all: written aside, then linked into
        place (which fails, atomically, if the key exists: FileExistsError), or
        renamed over it with `overwrite`. A folder is made once (and remembered,
        within a bounded set)."""
        parent, _, name = path.rpartition("/")
        if parent not in self._dirs:
            _make_folder(parent)
            if len(self._dirs) >= _KNOWN_FOLDERS:
                self._dirs.clear()
            self._dirs.add(parent)
        temporary = f"{parent}/.{name}.{uuid.uuid4().hex}.tmp"
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
        try:
            handle = os.open(temporary, flags, 0o666)
        except FileNotFoundError:  # the folder was removed since: make it again
            _make_folder(parent)
            handle = os.open(temporary, flags, 0o666)
        try:
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(handle, view):]
            finally:
                os.close(handle)
            if self.spec.overwrite:
                os.replace(temporary, path)
                return
            os.link(temporary, path)
        except BaseException:
            _unlink(temporary)
            raise
        os.unlink(temporary)


def _open_direct(destination: Destination, client: str, where: str):
    """obstore's writer where it can honour the destination, else None (the
    fsspec path); the choice and its reason go to the log."""
    try:
        chosen = direct.plan(destination, client)
    except direct.NotDirect as why:
        _LOG.info("%s: writes through fsspec (%s)", where, why)
        return None
    _LOG.info("%s: writes through obstore directly", where)
    return chosen.open()


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def _make_folder(path: str) -> None:
    try:
        os.mkdir(path)  # the usual case: only the last level is new
    except FileExistsError:
        pass
    except FileNotFoundError:
        os.makedirs(path, exist_ok=True)


class _Attempt:
    """One write's bookkeeping, the same for async and thread writes: the breaker's
    admission, the attempts, and after each failure the retry policy's verdict."""

    def __init__(self, store: ObjectStore, url: str):
        self._store, self._url = store, url
        self._started = time.monotonic()
        self._attempts = 0
        self._probe = False

    def begin(self) -> WriteResult | None:
        """None when the write may go ahead; a failed result when the breaker is open."""
        try:
            self._probe = self._store.breaker.admit()
        except CircuitOpen as exc:
            return WriteResult(self._url, 0, _ms_since(self._started), exc, ErrorClass.AUTH)
        self._attempts = 1
        return None

    def succeeded(self, existed: bool = False) -> WriteResult:
        self._store.breaker.record(None, probe=self._probe)
        self._store.outage.record(False)
        return WriteResult(self._url, self._attempts, _ms_since(self._started), existed=existed)

    def found(self, existing: bytes, data: bytes) -> WriteResult:
        """The key already held an object: the same bytes are a success, others a conflict."""
        if existing == data:
            return self.succeeded(existed=True)
        self._store.breaker.record(None, probe=self._probe)  # the store answered: credentials work
        self._store.outage.record(False)
        return WriteResult(self._url, self._attempts, _ms_since(self._started), KeyConflict(),
                           ErrorClass.CONFLICT)

    def failed(self, exc: Exception) -> tuple[WriteResult | None, float]:
        """(the final result, 0) when the retries are spent, else (None, seconds to wait)."""
        error_class = classify(exc)
        store = self._store
        store.outage.record(error_class in TRANSIENT)
        outage = store.outage.seconds()
        if not store.spec.retry.should_retry(error_class, self._attempts - 1, outage):
            store.breaker.record(error_class, describe(exc, 200), probe=self._probe)
            if error_class in TRANSIENT and store.spec.retry.hold_seconds and outage >= store.spec.retry.hold_seconds:
                exc = OutageTooLong(outage, store.spec.retry.hold_seconds, exc)
            return WriteResult(self._url, self._attempts, _ms_since(self._started), exc, error_class), 0.0
        delay = self._store.spec.retry.backoff(self._attempts, self._store._rng)
        self._attempts += 1
        return None, delay

    def abandoned(self) -> None:
        self._store.breaker.record(ErrorClass.UNKNOWN, probe=self._probe)  # no verdict; free the probe slot


class KeyConflict(Exception):
    """The key already holds an object with other bytes; it was left as it is."""

    def __init__(self):
        super().__init__("an object with different bytes already exists at this key; it was not replaced "
                         "(two messages share one id, or the message changed since it was archived)")


class OutageTooLong(Exception):
    """The destination answered only transient errors for longer than the hold."""

    def __init__(self, seconds: float, hold: float, last: BaseException):
        super().__init__(f"the store answered only transient errors for {seconds:.0f} s, longer than "
                         f"the hold of {hold:.0f} s; last error: {describe(last, 200)}")
        self.__cause__ = last


class WriteFuture:
    """One write's result: set once, on the I/O loop or a pool thread, and read in the
    caller's thread with `done()` and `result(timeout)`, as on a concurrent.futures
    Future, without making a Condition for each write."""

    __slots__ = ("_store", "_result", "_error", "_done")

    def __init__(self, store: ObjectStore):
        self._store = store
        self._result: WriteResult | None = None
        self._error: BaseException | None = None
        self._done = False

    def done(self) -> bool:
        return self._done

    def result(self, timeout: float | None = None) -> WriteResult:
        if not self._done:
            self._store._wait(self, timeout)
        if self._error is not None:
            raise self._error
        return self._result


def _ms_since(started: float) -> float:
    return round((time.monotonic() - started) * 1000, 3)
