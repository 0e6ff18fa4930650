"""The object store: puts archive objects under a destination URL through fsspec.

Many writes are in flight at once: on an async backend (s3fs, gcsfs, adlfs)
each write is a coroutine on fsspec's I/O loop; on a sync one (local disk,
memory) it runs in a small thread pool. `submit` blocks once `max_in_flight`
writes are pending, which is the back-pressure a DoFn needs. Each write
follows the retry policy, passes the destination's circuit breaker, and ends
in one `WriteResult`, never an exception. How a write carries metadata and
compliance options to each cloud is in `archive.backends`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import random
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import fsspec
from fsspec.implementations.local import LocalFileSystem

from archive import backends
from archive.breaker import CircuitBreaker, CircuitOpen
from archive.errors import ErrorClass, classify, describe
from archive.retry import RetryPolicy
from archive.tenants import Destination, check_transport


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

    def resolved(self) -> Destination:
        if isinstance(self.destination, Destination):
            return self.destination
        return Destination(self.destination, dict(self.storage_options), default=True)

    def for_destination(self, destination: Destination) -> "StoreSpec":
        """The same write settings for another destination."""
        return StoreSpec(destination, {}, self.max_in_flight, self.retry, self.breaker_cooldown)

    def open(self) -> "ObjectStore":
        return ObjectStore(self)


@dataclass(frozen=True)
class WriteResult:
    url: str
    attempts: int
    latency_ms: float
    error: BaseException | None = None
    error_class: ErrorClass | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True)
class ObjectMetadata:
    content_type: str = "application/json"
    content_encoding: str | None = None
    sha256: str | None = None            # hex digest of the object's bytes
    compression: str | None = None       # codec name, kept as user metadata


class ObjectStore:
    def __init__(self, spec: StoreSpec):
        if spec.max_in_flight < 1:
            raise ValueError("max_in_flight must be at least 1")
        self.spec = spec
        self.destination = spec.resolved()
        check_transport(self.destination, f"destination {self.destination.url}")
        self.fs, self.root = fsspec.core.url_to_fs(
            self.destination.url, **backends.client_options(self.destination))
        self.root = self.root.rstrip("/")
        self.backend = backends.for_filesystem(self.fs, self.destination)
        self.breaker = CircuitBreaker(spec.breaker_cooldown)
        self._local = isinstance(self.fs, LocalFileSystem)
        self._async = bool(getattr(self.fs, "async_impl", False))
        self._loop = self.fs.loop if self._async else None
        self._pool = None if self._async else concurrent.futures.ThreadPoolExecutor(
            max_workers=min(spec.max_in_flight, 16), thread_name_prefix="archive-store")
        self._slots = threading.BoundedSemaphore(spec.max_in_flight)
        self._dirs: set[str] = set()
        self._dirs_lock = threading.Lock()
        self._rng = random.Random()

    def url(self, key: str) -> str:
        return self.fs.unstrip_protocol(f"{self.root}/{key}")

    def submit(self, key: str, data: bytes, metadata: ObjectMetadata = ObjectMetadata()
               ) -> concurrent.futures.Future:
        """Start writing `data` at `key`; the future resolves to a WriteResult."""
        self._slots.acquire()
        if self._async:
            future = asyncio.run_coroutine_threadsafe(self._write(key, data, metadata), self._loop)
        else:  # straight to a thread: no event-loop wake-up per object
            future = self._pool.submit(self._write_sync, key, data)
        future.add_done_callback(lambda _: self._slots.release())
        return future

    def write(self, key: str, data: bytes, metadata: ObjectMetadata = ObjectMetadata()) -> WriteResult:
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
                await self.backend.put(self.fs, path, data, metadata)
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
                self._put_sync(path, data)
                return attempt.succeeded()
            except Exception as exc:  # every store error becomes a classified result
                result, delay = attempt.failed(exc)
                if result is not None:
                    return result
                time.sleep(delay)

    def _put_sync(self, path: str, data: bytes) -> None:
        if not self._local:
            self.fs.pipe_file(path, data)
            return
        # Local disk: parents are created once per folder, and the object
        # appears whole or not at all (write aside, then rename).
        parent = os.path.dirname(path)
        if parent not in self._dirs:
            os.makedirs(parent, exist_ok=True)
            with self._dirs_lock:
                self._dirs.add(parent)
        temporary = os.path.join(parent, f".{os.path.basename(path)}.{uuid.uuid4().hex}.tmp")
        try:
            with open(temporary, "wb") as handle:
                handle.write(data)
            os.replace(temporary, path)
        except BaseException:
            try:
                os.unlink(temporary)
            except OSError:
                pass
            raise


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

    def succeeded(self) -> WriteResult:
        self._store.breaker.record(None, probe=self._probe)
        return WriteResult(self._url, self._attempts, _ms_since(self._started))

    def failed(self, exc: Exception) -> tuple[WriteResult | None, float]:
        """(the final result, 0) when the retries are spent, else (None, seconds to wait)."""
        error_class = classify(exc)
        if not self._store.spec.retry.should_retry(error_class, self._attempts - 1):
            self._store.breaker.record(error_class, describe(exc, 200), probe=self._probe)
            return WriteResult(self._url, self._attempts, _ms_since(self._started), exc, error_class), 0.0
        delay = self._store.spec.retry.backoff(self._attempts, self._store._rng)
        self._attempts += 1
        return None, delay

    def abandoned(self) -> None:
        self._store.breaker.record(ErrorClass.UNKNOWN, probe=self._probe)  # no verdict; free the probe slot


def _ms_since(started: float) -> float:
    return round((time.monotonic() - started) * 1000, 3)
