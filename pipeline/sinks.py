"""File sinks: JSON Lines into a folder URL through fsspec.

Batch (WriteJsonLines): like Beam's file sinks, each bundle writes a temporary
file and a final step moves the complete set into place as
<name>-NNNNN-of-NNNNN.jsonl, so a retried bundle never leaves a duplicate or a
half-written file behind. Shards of an earlier run under the same name are
replaced.

Streaming (FolderSink): a stream has no end to finalize at, so each flush
writes one new, whole file.
"""

from __future__ import annotations

import json
import logging
import os
import uuid

import apache_beam as beam
import fsspec
from apache_beam.transforms.window import GlobalWindow
from apache_beam.utils.timestamp import MIN_TIMESTAMP
from apache_beam.utils.windowed_value import WindowedValue

_LOG = logging.getLogger(__name__)


class WriteJsonLines(beam.PTransform):
    """Write each element's `to_json()` (or the str itself) as one line.

    Produces a single-element PCollection: the list of final file URLs.
    """

    def __init__(self, folder: str, name: str, storage_options: dict | None = None):
        super().__init__()
        self._folder = folder.rstrip("/")
        self._name = name
        self._storage_options = dict(storage_options or {})

    def expand(self, records):
        temp = f"{self._folder}/.temp-{self._name}-{uuid.uuid4().hex}"
        return (
            records
            | "WriteTemp" >> beam.ParDo(_WriteTempFileFn(temp, self._storage_options))
            | "Gather" >> beam.combiners.ToList()
            | "Finalize" >> beam.ParDo(_FinalizeFn(self._folder, self._name, temp, self._storage_options))
        )


class _WriteTempFileFn(beam.DoFn):
    _FLUSH_LINES = 1024  # lines gathered per write call

    def __init__(self, temp: str, storage_options: dict):
        self._temp = temp
        self._storage_options = storage_options

    def setup(self):
        self._fs, self._temp_path = fsspec.core.url_to_fs(self._temp, **self._storage_options)

    def start_bundle(self):
        self._handle = None
        self._url = None
        self._lines: list[str] = []

    def process(self, record):
        self._lines.append(record if isinstance(record, str) else record.to_json())
        if len(self._lines) >= self._FLUSH_LINES:
            self._flush()

    def _flush(self):
        if self._handle is None:
            self._fs.makedirs(self._temp_path, exist_ok=True)
            path = f"{self._temp_path}/{uuid.uuid4().hex}.jsonl"
            self._url = self._fs.unstrip_protocol(path)
            self._handle = self._fs.open(path, "wb")
        self._lines.append("")  # the last line's newline
        self._handle.write("\n".join(self._lines).encode("utf-8"))
        self._lines = []

    def finish_bundle(self):
        if self._lines:
            self._flush()
        if self._handle is not None:
            self._handle.close()
            yield WindowedValue(self._url, MIN_TIMESTAMP, [GlobalWindow()])


class _FinalizeFn(beam.DoFn):
    def __init__(self, folder: str, name: str, temp: str, storage_options: dict):
        self._folder = folder
        self._name = name
        self._temp = temp
        self._storage_options = storage_options

    def process(self, temp_urls):
        fs, folder = fsspec.core.url_to_fs(self._folder, **self._storage_options)
        _, temp = fsspec.core.url_to_fs(self._temp, **self._storage_options)
        fs.makedirs(folder, exist_ok=True)
        for old in fs.glob(f"{folder}/{self._name}-*-of-*.jsonl"):
            fs.rm(old)
        sources = sorted(temp_urls) or [None]
        total = len(sources)
        finals = []
        for index, url in enumerate(sources):
            final = f"{folder}/{self._name}-{index:05d}-of-{total:05d}.jsonl"
            if url is None:
                fs.pipe_file(final, b"")  # an empty run still leaves a visible, empty result
            else:
                fs.mv(fs._strip_protocol(url), final)
            finals.append(fs.unstrip_protocol(final))
        if fs.exists(temp):
            fs.rm(temp, recursive=True)
        _LOG.info("wrote %d %s file(s) under %s", total, self._name, self._folder)
        yield finals


class FolderSink:
    """Streaming JSON Lines into a folder: each flush writes one new file (aside, then
    renamed), so a file is whole or absent."""

    def __init__(self, folder: str, name: str):
        self.folder, self.name = folder, name
        self._lines: list[str] = []
        self._fs = None

    def add_record(self, record: dict) -> None:
        self._lines.append(json.dumps(record, ensure_ascii=False))

    def flush(self) -> None:
        if not self._lines:
            return
        if self._fs is None:
            self._fs, self._path = fsspec.core.url_to_fs(self.folder)
            self._fs.makedirs(self._path, exist_ok=True)
        path = f"{self._path}/{self.name}-{uuid.uuid4().hex}.jsonl"
        temporary = f"{self._path}/.{os.path.basename(path)}.tmp"
        self._fs.pipe_file(temporary, ("\n".join(self._lines) + "\n").encode("utf-8"))
        self._fs.mv(temporary, path)
        self._lines = []
