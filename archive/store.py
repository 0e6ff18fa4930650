"""The object store: puts archive objects under a destination URL through fsspec.

Many writes are in flight at once: on an async backend (s3fs, gcsfs, adlfs)
each write is a coroutine on fsspec's I/O loop; on a sync one (local disk,
memory) it runs in a small thread pool. `submit` blocks once `max_in_flight`
writes are pending, which is the back-pressure a DoFn needs. Each write
follows the retry policy and ends in one `WriteResult`, never an exception.
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
import fsspec.asyn
from fsspec.implementations.local import LocalFileSystem

from archive.errors import ErrorClass, classify
from archive.retry import RetryPolicy


@dataclass(frozen=True)
class StoreSpec:
    """What a worker needs to open the store: picklable, no live clients."""

    destination: str                                   # URL of the archive root
    storage_options: dict[str, Any] = field(default_factory=dict)
    max_in_flight: int = 64
    retry: RetryPolicy = RetryPolicy()

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


class ObjectStore:
    def __init__(self, spec: StoreSpec):
        if spec.max_in_flight < 1:
            raise ValueError("max_in_flight must be at least 1")
        self.spec = spec
        self.fs, self.root = fsspec.core.url_to_fs(spec.destination, **spec.storage_options)
        self.root = self.root.rstrip("/")
        self._local = isinstance(self.fs, LocalFileSystem)
        self._async = bool(getattr(self.fs, "async_impl", False))
        self._loop = self.fs.loop if self._async else fsspec.asyn.get_loop()
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
        future = asyncio.run_coroutine_threadsafe(self._write(key, data, metadata), self._loop)
        future.add_done_callback(lambda _: self._slots.release())
        return future

    def write(self, key: str, data: bytes, metadata: ObjectMetadata = ObjectMetadata()) -> WriteResult:
        return self.submit(key, data, metadata).result()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)

    async def _write(self, key: str, data: bytes, metadata: ObjectMetadata) -> WriteResult:
        path = f"{self.root}/{key}"
        url = self.fs.unstrip_protocol(path)
        started = time.monotonic()
        attempts = 0
        while True:
            attempts += 1
            try:
                if self._async:
                    await self.fs._pipe_file(path, data, **self._put_options(metadata))
                else:
                    await self._loop.run_in_executor(self._pool, self._put_sync, path, data)
                return WriteResult(url, attempts, _ms_since(started))
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # every store error becomes a classified result
                error_class = classify(exc)
                if not self.spec.retry.should_retry(error_class, attempts - 1):
                    return WriteResult(url, attempts, _ms_since(started), exc, error_class)
                await asyncio.sleep(self.spec.retry.backoff(attempts, self._rng))

    def _put_options(self, metadata: ObjectMetadata) -> dict[str, Any]:
        """Backend-specific object metadata (Content-Type, Content-Encoding)."""
        protocol = self.fs.protocol if isinstance(self.fs.protocol, str) else self.fs.protocol[0]
        if protocol in ("s3", "s3a"):
            options = {"ContentType": metadata.content_type}
            if metadata.content_encoding:
                options["ContentEncoding"] = metadata.content_encoding
            return options
        if protocol in ("gs", "gcs"):
            return {"content_type": metadata.content_type}
        return {}

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


def _ms_since(started: float) -> float:
    return round((time.monotonic() - started) * 1000, 3)
