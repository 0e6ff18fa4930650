"""A real fsspec filesystem that fails on a schedule: "faulty://".

An in-memory filesystem (its own store, not memory://'s) whose `pipe_file`
raises, per path, the next exception of a schedule the test gives, then
succeeds; every attempt is recorded. fsspec caches instances, so a test reaches
the one its ObjectStore uses through `store.fs` (or `fsspec.filesystem("faulty")`).
"""

from __future__ import annotations

import threading
from collections import defaultdict
from typing import Iterable

import fsspec
from fsspec.implementations.memory import MemoryFileSystem


class FaultyFileSystem(MemoryFileSystem):
    protocol = "faulty"
    store: dict = {}          # its own objects, apart from memory://
    pseudo_dirs = [""]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._lock = threading.Lock()
        self._schedules: dict[str, Iterable[BaseException]] = {}
        self.attempts: dict[str, int] = defaultdict(int)

    @classmethod
    def _strip_protocol(cls, path):
        if isinstance(path, str):
            path = path.removeprefix("faulty://")
        return super()._strip_protocol(path)

    def fail(self, path: str, schedule: Iterable[BaseException]) -> None:
        """Make the next writes to `path` raise these exceptions, in order."""
        with self._lock:
            self._schedules[self._strip_protocol(path)] = iter(schedule)

    def attempts_at(self, path: str) -> int:
        with self._lock:
            return self.attempts[self._strip_protocol(path)]

    def pipe_file(self, path, value, mode="overwrite", **kwargs):
        path = self._strip_protocol(path)
        with self._lock:
            self.attempts[path] += 1
            schedule = self._schedules.get(path)
            failure = next(schedule, None) if schedule is not None else None
        if failure is not None:
            raise failure
        return super().pipe_file(path, value, mode=mode, **kwargs)


fsspec.register_implementation("faulty", FaultyFileSystem, clobber=True)
