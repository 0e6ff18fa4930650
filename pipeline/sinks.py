"""File sinks: JSON Lines into a folder URL through fsspec, never failing on a record.

Batch (WriteJsonLines), one run's files in a folder other runs may share:

    records ─_WriteTempFileFn─ a file per bundle ─┬─ <folder>/.temp-<name>-<run_id>-<uuid>/ ──┐
                                                  └─ refused: <spill>/<name>/ (local)          │
            ─ Gather ─ _FinalizeFn ─ moved, never over an existing file ─> <folder>/<name>-<run_id>-NNNNN-of-NNNNN.jsonl
                                     refused: what is left fetched into <spill>/<name>/

Like Beam's file sinks, each bundle writes a file aside and one final step
moves the complete set into place, so a retried bundle never leaves a
duplicate or a half-written file behind. Every name carries the run id and a
run only ever moves, creates or deletes files it made itself: a final name
that is taken (a re-used run id) gets another name, it is never overwritten.
A bundle bound for an object store is first written to a local staging file
and uploaded whole, so when the store refuses us the records are still on
local disk: they move to the run's spill folder (`<spill_dir>/<run_id>/<name>/`),
the `sinks` counters say so, and the job exits 4. What this does not do: spill
on a worker the job's machine cannot see (on a distributed runner the spill
folder is on the worker that wrote it).

Streaming (FolderSink): a stream has no end to finalize at, so each flush
writes one new, whole file, <name>-<run_id>-<uuid>.jsonl. A refused flush
raises: the bundle is retried and the source does not advance past it.

Every line is strict JSON (RFC 8259) in valid UTF-8 whatever the record
holds (`strict_json`).
"""

from __future__ import annotations

import base64
import json
import logging
import math
import os
import secrets
import shutil
import tempfile
import uuid

import apache_beam as beam
import fsspec
from apache_beam.metrics import Metrics
from apache_beam.transforms.window import GlobalWindow
from apache_beam.utils.timestamp import MIN_TIMESTAMP
from apache_beam.utils.windowed_value import WindowedValue
from fsspec.implementations.local import LocalFileSystem

from archive.errors import classify
from archive.tenants import redact_url

_LOG = logging.getLogger(__name__)

SINKS_NAMESPACE = "sinks"  # counters: "<name>.spilled_records", "<name>.refused.<error class>.<exception>"


# --- records as strict JSON lines --------------------------------------------------------

def strict_json(value) -> str:
    """`value` as one line of JSON that every strict reader accepts and that encodes to
    UTF-8. What JSON cannot hold is written as text, never dropped: a lone surrogate as
    its escape ("\\\\ud800"), NaN and infinities as "NaN"/"Infinity", bytes as base64."""
    try:
        text = json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
        text.encode("utf-8")
        return text
    except (UnicodeEncodeError, ValueError, TypeError):
        return json.dumps(_representable(value), ensure_ascii=False, allow_nan=False, separators=(",", ":"))


def strict_line(text: str) -> str:
    """A line of JSON text (a `to_json()`) made encodable to UTF-8 the same way."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        try:
            return strict_json(json.loads(text))
        except ValueError:  # not JSON at all: keep it as a JSON string
            return strict_json(text)


def strict_text(text: str) -> str:
    """`text` with each lone surrogate spelled as its escape: valid UTF-8, nothing lost."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _representable(value):
    if isinstance(value, str):
        return strict_text(value)
    if isinstance(value, bool) or value is None or isinstance(value, int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else json.dumps(value)  # "NaN", "Infinity", "-Infinity"
    if isinstance(value, dict):
        return {strict_text(str(k)): _representable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_representable(v) for v in value]
    if isinstance(value, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(value)).decode("ascii")
    return strict_text(str(value))


# --- the local spill folder --------------------------------------------------------------

class _Spill:
    """Where a sink's records go when their folder refuses them, and the record of it."""

    def __init__(self, folder: str, name: str, target: str):
        self.folder = os.path.join(folder, name)
        self._name = name
        self._target = redact_url(target)
        self._records = Metrics.counter(SINKS_NAMESPACE, f"{name}.spilled_records")

    def refused(self, error: BaseException, records: int, where: str = "") -> None:
        """Count a refusal; only the exception's type is named, its text may hold credentials."""
        error_class = classify(error).value
        Metrics.counter(SINKS_NAMESPACE, f"{self._name}.refused.{error_class}.{type(error).__name__}").inc()
        self._records.inc(records)
        _LOG.warning("the %s sink could not write to %s (%s: %s)%s; %d record(s) kept in %s",
                     self._name, self._target, error_class, type(error).__name__, where, records, self.folder)

    def free_path(self, file_name: str) -> str:
        """A path in the spill folder that no file holds yet."""
        os.makedirs(self.folder, exist_ok=True)
        path = os.path.join(self.folder, file_name)
        stem, dot, ext = file_name.partition(".")
        while os.path.exists(path):
            path = os.path.join(self.folder, f"{stem}-{secrets.token_hex(3)}{dot}{ext}")
        return path

    def keep(self, local_path: str, file_name: str) -> str:
        """Move a local file into the spill folder."""
        path = self.free_path(file_name)
        shutil.move(local_path, path)
        return path


def _count_lines(path: str) -> int:
    with open(path, "rb") as handle:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: handle.read(1 << 20), b""))


# --- batch --------------------------------------------------------------------------------

class WriteJsonLines(beam.PTransform):
    """Write each element's `to_json()` (or the str itself) as one line, in files named
    <name>-<run_id>-NNNNN-of-NNNNN.jsonl under `folder`.

    Produces a single-element PCollection: the list of final file URLs (the files
    that had to be spilled are not in it; the `sinks` counters count them).
    """

    def __init__(self, folder: str, name: str, storage_options: dict | None = None,
                 run_id: str | None = None, spill_folder: str | None = None):
        super().__init__()
        from pipeline.options import DEFAULT_SPILL_DIR, new_run_id

        self._folder = folder.rstrip("/")
        self._name = name
        self._storage_options = dict(storage_options or {})
        self._run_id = run_id or new_run_id()
        self._spill_folder = spill_folder or os.path.join(os.path.abspath(DEFAULT_SPILL_DIR), self._run_id)

    def expand(self, records):
        temp = f"{self._folder}/.temp-{self._name}-{self._run_id}-{uuid.uuid4().hex[:8]}"
        where = (self._folder, self._name, self._run_id, self._spill_folder, self._storage_options)
        return (
            records
            | "WriteTemp" >> beam.ParDo(_WriteTempFileFn(temp, *where))
            | "Gather" >> beam.combiners.ToList()
            | "Finalize" >> beam.ParDo(_FinalizeFn(temp, *where))
        )


class _WriteTempFileFn(beam.DoFn):
    """One file per bundle in the temp folder. To a local folder it is written in place;
    to an object store it is staged on local disk and uploaded whole in finish_bundle.
    Whatever the folder refuses is moved into the spill folder, never lost."""

    _FLUSH_LINES = 1024  # lines gathered per write call

    def __init__(self, temp: str, folder: str, name: str, run_id: str, spill_folder: str,
                 storage_options: dict):
        self._temp = temp
        self._folder, self._name, self._run_id = folder, name, run_id
        self._spill_folder = spill_folder
        self._storage_options = storage_options

    def setup(self):
        self._spill = _Spill(self._spill_folder, self._name, self._folder)
        self._setup_error = None
        try:
            self._fs, self._temp_path = fsspec.core.url_to_fs(self._temp, **self._storage_options)
        except Exception as exc:  # bad storage options, unknown protocol: the folder cannot be written
            self._fs, self._temp_path, self._setup_error = None, None, exc
        self._local = isinstance(self._fs, LocalFileSystem)

    def start_bundle(self):
        self._handle = None
        self._path = None          # the file being written: in the temp folder, staging, or spill
        self._spilled = False
        self._refusal = None
        self._records = 0
        self._lines: list[str] = []

    def process(self, record):
        self._lines.append(record if isinstance(record, str) else record.to_json())
        if len(self._lines) >= self._FLUSH_LINES:
            self._flush()

    def _open(self):
        if self._setup_error is not None:
            self._spill_from(None, self._setup_error)
        elif self._local:
            try:
                self._fs.makedirs(self._temp_path, exist_ok=True)
                self._path = f"{self._temp_path}/{uuid.uuid4().hex}.jsonl"
                self._handle = open(self._path, "wb")
            except OSError as exc:
                self._spill_from(None, exc)
        else:
            descriptor, self._path = tempfile.mkstemp(prefix=f".{self._name}-{self._run_id}-", suffix=".jsonl")
            self._handle = os.fdopen(descriptor, "wb")

    def _spill_from(self, partial: str | None, error: BaseException):
        """Go on writing this bundle in the spill folder, after what `partial` already holds."""
        self._refusal = error
        self._spilled = True
        self._path = self._spill.free_path(f"{self._name}-{self._run_id}-{uuid.uuid4().hex[:12]}.jsonl")
        self._handle = open(self._path, "wb")
        if partial is not None:
            try:
                with open(partial, "rb") as written:
                    shutil.copyfileobj(written, self._handle)
                os.remove(partial)
            except OSError:
                pass  # unreadable: the lines still in memory are written below; the rest stays at `partial`

    def _flush(self):
        if self._handle is None:
            self._open()
        self._lines.append("")  # the last line's newline
        try:
            data = "\n".join(self._lines).encode("utf-8")
        except UnicodeEncodeError:  # rare: only then is each line looked at
            data = "\n".join(strict_line(line) for line in self._lines).encode("utf-8")
        count = len(self._lines) - 1
        self._lines = []
        try:
            self._handle.write(data)
        except OSError as exc:
            if self._spilled:
                raise  # the local spill disk itself failed: nowhere left to keep them
            partial, handle = self._path, self._handle
            try:
                handle.close()
            except OSError:
                pass
            self._spill_from(partial, exc)
            self._handle.write(data)
        self._records += count

    def finish_bundle(self):
        if self._lines:
            self._flush()
        if self._handle is None:
            return
        try:
            self._handle.close()
        except OSError as exc:
            if self._spilled:
                raise
            self._spill_from(self._path, exc)
            self._handle.close()
        if self._spilled:
            self._spill.refused(self._refusal, self._records)
            return
        if self._local:
            yield WindowedValue(self._fs.unstrip_protocol(self._path), MIN_TIMESTAMP, [GlobalWindow()])
            return
        remote = f"{self._temp_path}/{uuid.uuid4().hex}.jsonl"
        try:
            self._fs.makedirs(self._temp_path, exist_ok=True)
            self._fs.put_file(self._path, remote)
        except Exception as exc:  # refused, unreachable: the staged file is the bundle, whole
            self._spill.keep(self._path, f"{self._name}-{self._run_id}-{uuid.uuid4().hex[:12]}.jsonl")
            self._spill.refused(exc, self._records)
            return
        os.remove(self._path)
        yield WindowedValue(self._fs.unstrip_protocol(remote), MIN_TIMESTAMP, [GlobalWindow()])


class _FinalizeFn(beam.DoFn):
    """Moves the run's temp files to their final names, over no existing file."""

    def __init__(self, temp: str, folder: str, name: str, run_id: str, spill_folder: str,
                 storage_options: dict):
        self._temp = temp
        self._folder, self._name, self._run_id = folder, name, run_id
        self._spill_folder = spill_folder
        self._storage_options = storage_options

    def process(self, temp_urls):
        spill = _Spill(self._spill_folder, self._name, self._folder)
        sources = sorted(temp_urls)
        total = max(1, len(sources))
        finals, placed = [], set()
        fs = None
        try:
            fs, folder = fsspec.core.url_to_fs(self._folder, **self._storage_options)
            fs.makedirs(folder, exist_ok=True)
            tag = self._free_tag(fs, folder, total)
            for index in range(total):
                url = sources[index] if sources else None
                final = self._place(fs, None if url is None else fs._strip_protocol(url), folder, tag, index, total)
                placed.add(url)
                finals.append(fs.unstrip_protocol(final))
            _, temp = fsspec.core.url_to_fs(self._temp, **self._storage_options)
            if fs.exists(temp):
                fs.rm(temp, recursive=True)
        except Exception as exc:  # the folder refuses us: fetch what is left into the spill folder
            self._spill_rest(fs, spill, [(i, u) for i, u in enumerate(sources) if u not in placed], total, exc)
        else:
            _LOG.info("wrote %d %s file(s) under %s", total, self._name, redact_url(self._folder))
        yield finals

    def _final_name(self, tag: str, index: int, total: int) -> str:
        return f"{self._name}-{tag}-{index:05d}-of-{total:05d}.jsonl"

    def _free_tag(self, fs, folder: str, total: int) -> str:
        """The run id, or, when a file of that name exists (a re-used run id), the run id
        and a random suffix: another run's file is never overwritten."""
        tag = self._run_id
        while any(fs.exists(f"{folder}/{self._final_name(tag, i, total)}") for i in range(total)):
            tag = f"{self._run_id}-{secrets.token_hex(3)}"
            _LOG.warning("%s files named after run %s exist under %s: writing %s-%s-* instead",
                         self._name, self._run_id, redact_url(self._folder), self._name, tag)
        return tag

    def _place(self, fs, source: str | None, folder: str, tag: str, index: int, total: int) -> str:
        """Move `source` (None: an empty file) to its final name; a name taken meanwhile
        (a concurrent run with the same id) makes it pick another."""
        while True:
            final = f"{folder}/{self._final_name(tag, index, total)}"
            try:
                _create_exclusively(fs, source, final)
                return final
            except FileExistsError:
                tag = f"{self._run_id}-{secrets.token_hex(3)}"

    def _spill_rest(self, fs, spill: _Spill, remaining: list[tuple[int, str]], total: int,
                    error: BaseException):
        kept, stranded = 0, []
        for index, url in remaining:
            name = self._final_name(self._run_id, index, total)
            try:
                path = spill.free_path(name)
                if isinstance(fs, LocalFileSystem):
                    shutil.move(fs._strip_protocol(url), path)
                else:
                    fs.get_file(fs._strip_protocol(url), path)
                kept += _count_lines(path)
            except Exception:
                stranded.append(redact_url(url))
        where = f"; still in its temp folder: {', '.join(stranded)}" if stranded else ""
        spill.refused(error, kept, where)


def _create_exclusively(fs, source: str | None, final: str) -> None:
    """Move `source` to `final`, or create `final` empty; FileExistsError if it exists.
    Atomic on a local disk (a hard link fails on an existing name); elsewhere a check
    just before, the best an object store offers through fsspec."""
    if isinstance(fs, LocalFileSystem):
        if source is None:
            with open(final, "xb"):
                return
        try:
            os.link(source, final)
        except FileExistsError:
            raise
        except OSError:  # no hard links here (some mounts): check, then rename
            if os.path.exists(final):
                raise FileExistsError(final) from None
            os.rename(source, final)
            return
        os.unlink(source)
        return
    if fs.exists(final):
        raise FileExistsError(final)
    if source is None:
        fs.pipe_file(final, b"")  # an empty run still leaves a visible, empty result
    else:
        fs.mv(source, final)


# --- streaming ----------------------------------------------------------------------------

class FolderSink:
    """Streaming JSON Lines into a folder: each flush writes one new file (aside, then
    renamed), so a file is whole or absent."""

    def __init__(self, folder: str, name: str, run_id: str | None = None):
        self.folder, self.name, self.run_id = folder, name, run_id
        self._lines: list[str] = []
        self._fs = None

    def add_record(self, record: dict) -> None:
        self._lines.append(strict_json(record))

    def flush(self) -> None:
        if not self._lines:
            return
        if self._fs is None:
            self._fs, self._path = fsspec.core.url_to_fs(self.folder)
            self._fs.makedirs(self._path, exist_ok=True)
        stem = f"{self.name}-{self.run_id}" if self.run_id else self.name
        path = f"{self._path}/{stem}-{uuid.uuid4().hex}.jsonl"
        temporary = f"{self._path}/.{os.path.basename(path)}.tmp"
        self._fs.pipe_file(temporary, ("\n".join(self._lines) + "\n").encode("utf-8"))
        self._fs.mv(temporary, path)
        self._lines = []
