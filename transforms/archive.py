"""ArchiveMessages: outbound messages in, one archive outcome per message out.

    messages ──_PrepareFn──> ArchiveRequest ──_WriteArchiveFn──> ARCHIVED | FAILED ─┐
                 └──────────> INVALID outcome + dead letter ─────────────────────────┴─> outcomes

The transform does not care where messages come from (files, Kafka, Pub/Sub):
an element is the raw record (bytes, str, or a mapping) or a `SourcedRecord`
that also says where it was read.
"""

from __future__ import annotations

import collections
import logging
import time
from typing import Any, Mapping, NamedTuple

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.utils.windowed_value import WindowedValue

from archive.archiver import ArchiveRequest, Archiver, ArchiverConfig
from archive.envelope import InvalidMessage
from archive.outcome import ARCHIVED, FAILED, INVALID, Outcome
from archive.store import StoreSpec

_LOG = logging.getLogger(__name__)

METRICS_NAMESPACE = "archive"
OUTCOMES = "outcomes"
DEAD_LETTERS = "dead_letters"
REQUESTS = "requests"


class SourcedRecord(NamedTuple):
    """A raw input record and where it was read (file:line, topic/partition@offset)."""

    data: bytes | str | Mapping[str, Any]
    source: str | None = None


class ArchiveResult(NamedTuple):
    """The outputs of ArchiveMessages."""

    outcomes: beam.PCollection       # Outcome, exactly one per input record
    dead_letters: beam.PCollection   # DeadLetter, the original bytes of every INVALID record


def outcome_counter(channel: str | None, status: str):
    return Metrics.counter(METRICS_NAMESPACE, f"{channel or 'unknown'}.{status}")


class ArchiveMessages(beam.PTransform):
    """Archive each message as one compressed JSON object; emit one Outcome each.

    Args:
      store: where and how objects are written (destination URL, storage
        options, concurrency, retry policy).
      config: the output profile, compression, phone default region, limits.
    """

    def __init__(self, store: StoreSpec, config: ArchiverConfig = ArchiverConfig()):
        super().__init__()
        self._store = store
        self._config = config
        Archiver(config)  # fail at construction, not on a worker, for a bad profile/codec

    def expand(self, messages):
        prepared = messages | "Prepare" >> beam.ParDo(_PrepareFn(self._config)).with_outputs(
            OUTCOMES, DEAD_LETTERS, main=REQUESTS)
        written = prepared[REQUESTS] | "Write" >> beam.ParDo(
            _WriteArchiveFn(self._store, self._config))
        outcomes = (written, prepared[OUTCOMES]) | "Outcomes" >> beam.Flatten()
        return ArchiveResult(outcomes=outcomes, dead_letters=prepared[DEAD_LETTERS])


class _PrepareFn(beam.DoFn):
    """Decode, key and encode one message; bad input leaves as INVALID."""

    def __init__(self, config: ArchiverConfig):
        self._config = config

    def setup(self):
        self._archiver = Archiver(self._config)

    def process(self, element):
        raw, source = (element.data, element.source) if isinstance(element, SourcedRecord) else (element, None)
        try:
            yield self._archiver.prepare(raw, source)
        except InvalidMessage as error:
            outcome, dead_letter = self._archiver.rejected(raw, error, source)
            outcome_counter(outcome.channel, INVALID).inc()
            yield beam.pvalue.TaggedOutput(OUTCOMES, outcome)
            yield beam.pvalue.TaggedOutput(DEAD_LETTERS, dead_letter)


class _Pending(NamedTuple):
    request: ArchiveRequest
    future: Any
    timestamp: Any
    windows: Any


class _WriteArchiveFn(beam.DoFn):
    """Keeps up to `max_in_flight` writes going; emits each outcome when its write ends.

    Outcomes leave in completion order from `process` and whatever is still in
    flight is awaited in `finish_bundle`, so a bundle only commits once every
    one of its messages has an outcome.
    """

    _PROGRESS_EVERY_S = 10.0

    def __init__(self, store: StoreSpec, config: ArchiverConfig):
        self._spec = store
        self._config = config
        self._bytes = Metrics.counter(METRICS_NAMESPACE, "bytes_written")
        self._latency = Metrics.distribution(METRICS_NAMESPACE, "write_latency_ms")
        self._attempts = Metrics.distribution(METRICS_NAMESPACE, "write_attempts")

    def setup(self):
        self._store = self._spec.open()
        self._archiver = Archiver(self._config)
        self._done = 0
        self._started = time.monotonic()
        self._next_progress = self._started + self._PROGRESS_EVERY_S

    def start_bundle(self):
        self._pending: collections.deque[_Pending] = collections.deque()

    def process(self, request: ArchiveRequest, timestamp=beam.DoFn.TimestampParam,
                window=beam.DoFn.WindowParam):
        future = self._store.submit(request.key, request.data, request.metadata)
        self._pending.append(_Pending(request, future, timestamp, (window,)))
        while self._pending and self._pending[0].future.done():
            yield self._outcome(self._pending.popleft())
        if len(self._pending) > 2 * self._spec.max_in_flight:
            # A slow write at the head (a retry backing off) must not hold back
            # everything finished behind it: emit those too and keep the rest.
            waiting = collections.deque()
            for pending in self._pending:
                if pending.future.done():
                    yield self._outcome(pending)
                else:
                    waiting.append(pending)
            self._pending = waiting

    def finish_bundle(self):
        while self._pending:
            yield self._outcome(self._pending.popleft())

    def teardown(self):
        store = getattr(self, "_store", None)
        if store is not None:
            store.close()

    def _outcome(self, pending: _Pending) -> WindowedValue:
        outcome: Outcome = self._archiver.written(pending.request, pending.future.result())
        outcome_counter(outcome.channel, outcome.status).inc()
        self._attempts.update(outcome.attempts or 0)
        if outcome.status == ARCHIVED:
            self._bytes.inc(outcome.bytes or 0)
            self._latency.update(int(outcome.latency_ms or 0))
        elif outcome.status == FAILED:
            _LOG.warning("failed to archive message %s (%s): %s",
                         outcome.message_id, outcome.error_class, outcome.error)
        self._report_progress()
        return WindowedValue(outcome, pending.timestamp, pending.windows)

    def _report_progress(self):
        self._done += 1
        now = time.monotonic()
        if now >= self._next_progress:
            self._next_progress = now + self._PROGRESS_EVERY_S
            rate = self._done / max(now - self._started, 1e-9)
            _LOG.info("archive progress: %d messages written by this worker (%.0f/s)", self._done, rate)
