"""Batch sources: historical sends from JSON Lines or Parquet files, via fsspec.

ReadOutboundMessages expands URL patterns (globs) into files, spreads the files
over workers, and streams each file record by record (nothing is read whole).
Each record leaves as a SourcedRecord carrying "url:line" (or "url#row") so an
INVALID outcome says where its input was.
"""

from __future__ import annotations

import base64
import binascii
import datetime as _dt
import decimal
import json
import logging
from typing import Any, Callable, Iterable

import apache_beam as beam
import fsspec
from apache_beam.metrics import Metrics

from transforms.archive import METRICS_NAMESPACE, SourcedRecord

_LOG = logging.getLogger(__name__)

_COMPRESSIONS = {".gz": "gzip", ".gzip": "gzip", ".lz4": "lz4", ".zst": "zstd", ".zstd": "zstd"}


class ReadOutboundMessages(beam.PTransform):
    """Read every record of the files matching `patterns` (fsspec URLs or globs).

    JSON Lines files (optionally .gz, .lz4 or .zst) yield each line as raw
    bytes, without its "\n" and nothing else: a CRLF line keeps its CR (JSON
    whitespace), so a dead letter's bytes and sha256 are the stored line's.
    An empty line is skipped and counted (the `blank_lines` counter); a line of
    only whitespace is yielded and ends INVALID, so it is seen. Decoding and
    validation belong to the archive transform, so a broken line becomes an
    INVALID outcome rather than a failed read. Parquet files (.parquet, .parq)
    yield one mapping per row.

    With `input_format="dead_letters"` the files are a run's dead letters: each
    FAILED letter yields the original message it kept, to be archived again
    (the re-drive); INVALID letters would only be INVALID again, and are
    counted (`redrive_invalid_skipped`), not read.
    """

    def __init__(self, patterns: str | Iterable[str], storage_options: dict | None = None,
                 input_format: str = "records"):
        super().__init__()
        if input_format not in INPUT_FORMATS:
            raise ValueError(f"unknown input format {input_format!r} (expected one of {', '.join(INPUT_FORMATS)})")
        self._patterns = [patterns] if isinstance(patterns, str) else list(patterns)
        self._storage_options = dict(storage_options or {})
        self._input_format = input_format

    def expand(self, pbegin):
        return (
            pbegin
            | "Patterns" >> beam.Create(self._patterns)
            | "Match" >> beam.ParDo(_MatchFilesFn(self._storage_options))
            | "Spread" >> beam.Reshuffle()
            | "Read" >> beam.ParDo(_ReadRecordsFn(self._storage_options, self._input_format))
        )


INPUT_FORMATS = ("records", "dead_letters")


def match_files(pattern: str, storage_options: dict) -> list[str]:
    """The data files (URLs) a pattern names: a glob, a folder (recursively) or one
    file; FileNotFoundError when there are none."""
    fs, path = fsspec.core.url_to_fs(pattern, **storage_options)
    if fsspec.core.has_magic(path):
        found = [p for p, info in fs.glob(path, detail=True).items() if info["type"] == "file"]
    elif fs.isdir(path):
        found = fs.find(path)
    else:
        found = [path] if fs.exists(path) else []
    files = sorted(p for p in found if _is_data_file(p))
    if not files:
        # An empty backfill is almost always a typo in the pattern: say so loudly.
        raise FileNotFoundError(f"no input files match {pattern}")
    return [fs.unstrip_protocol(p) for p in files]


class _MatchFilesFn(beam.DoFn):
    def __init__(self, storage_options: dict):
        self._storage_options = storage_options

    def process(self, pattern: str):
        files = match_files(pattern, self._storage_options)
        _LOG.info("input: %d file(s)", len(files))
        yield from files


def _is_data_file(path: str) -> bool:
    name = path.rsplit("/", 1)[-1]
    return not name.startswith((".", "_"))


class _ReadRecordsFn(beam.DoFn):
    def __init__(self, storage_options: dict, input_format: str = "records"):
        self._storage_options = storage_options
        self._input_format = input_format
        self._records = Metrics.counter(METRICS_NAMESPACE, "input_records")
        self._files = Metrics.counter(METRICS_NAMESPACE, "input_files")
        self._blank_lines = Metrics.counter(METRICS_NAMESPACE, "blank_lines")
        self._invalid_skipped = Metrics.counter(METRICS_NAMESPACE, "redrive_invalid_skipped")

    def process(self, url: str):
        self._files.inc()
        if self._input_format == "dead_letters":
            records = _failed_letters(_json_lines(url, self._storage_options, self._blank_lines.inc),
                                      self._invalid_skipped.inc)
        elif url.endswith((".parquet", ".parq")):
            records = _parquet_rows(url, self._storage_options)
        else:
            records = _json_lines(url, self._storage_options, self._blank_lines.inc)
        for record in records:
            self._records.inc()
            yield record


def _json_lines(url: str, storage_options: dict, on_blank_line: Callable[[], None] = lambda: None):
    compression = next((c for s, c in _COMPRESSIONS.items() if url.endswith(s)), None)
    with fsspec.open(url, "rb", compression=compression, **storage_options) as handle:
        for number, line in enumerate(handle, start=1):
            if line.endswith(b"\n"):  # the terminator only: a CR stays, it is the record's byte
                line = line[:-1]
            if line:
                yield SourcedRecord(line, f"{url}:{number}")
            else:
                on_blank_line()


def _failed_letters(lines: Iterable[SourcedRecord], on_invalid: Callable[[], None]):
    """The original messages of the FAILED dead letters among `lines`. A line that
    is not a dead letter goes on as it is, to end INVALID: nothing is dropped."""
    for line in lines:
        try:
            letter = json.loads(line.data)
            if not isinstance(letter, dict):
                raise ValueError
            if letter.get("status", "INVALID") != "FAILED":
                on_invalid()
                continue
            if isinstance(letter.get("input"), str):
                original = letter["input"].encode("utf-8", "surrogatepass")
            else:
                original = base64.b64decode(letter["input_base64"], validate=True)
        except (ValueError, KeyError, TypeError, binascii.Error, RecursionError):
            yield line
            continue
        yield SourcedRecord(original, f"{line.source} (re-drive of {letter.get('source') or 'unknown'})")


def _parquet_rows(url: str, storage_options: dict):
    import pyarrow.parquet as pq

    with fsspec.open(url, "rb", **storage_options) as handle:
        parquet = pq.ParquetFile(handle)
        row = 0
        for batch in parquet.iter_batches(batch_size=1024):
            for record in batch.to_pylist():
                row += 1
                yield SourcedRecord(_json_ready(record), f"{url}#{row}")


def _json_ready(value: Any) -> Any:
    """A Parquet row as JSON values. Parquet cannot tell an absent field from a
    null one, so nulls are dropped: the envelope treats both alike."""
    if isinstance(value, dict):
        return {k: _json_ready(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_json_ready(v) for v in value]
    if isinstance(value, _dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=_dt.timezone.utc)
        return value.isoformat()
    if isinstance(value, _dt.date):
        return value.strftime("%Y%m%d")
    if isinstance(value, decimal.Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            return value  # rejected by the envelope's type check, kept in the dead letter
    return value
