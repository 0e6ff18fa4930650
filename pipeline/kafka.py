"""Kafka in and out, on confluent-kafka, for any Beam runner that runs Python SDFs.

ReadFromKafkaTopic: a splittable DoFn per partition, its restriction an offset
range from the consumer group's committed offset to infinity. Each call reads
what the broker has, claims each offset, emits the record stamped with its
Kafka timestamp (the watermark follows them) and checkpoints itself
(`defer_remainder`) so the runner commits the bundle and calls again.

Offsets are committed by CommitKafkaOffsets at the very end of the pipeline,
only for records whose results (delivery or failed-to-archive) are durable in
their sink, and only up to the first record that is not: a restart resumes at
the first unfinished record, so nothing is lost (at-least-once; delivered
messages keep their message id for de-duplication).

A broker that is down or restarting is waited for, not failed on: the
committer retries its reads and commits, and a sink's flush keeps waiting
for its acknowledgements, for as long as the broker is away. (On Prism a
failed bundle fails the whole job, so giving up would stop the stream for
good; waiting holds it, and it goes on by itself once the broker is back.)
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable, Iterable, NamedTuple, TypeVar

import apache_beam as beam
from apache_beam.coders import PickleCoder
from apache_beam.io.restriction_trackers import OffsetRange, OffsetRestrictionTracker
from apache_beam.io.watermark_estimators import ManualWatermarkEstimator
from apache_beam.metrics import Metrics
from apache_beam.transforms import userstate
from apache_beam.transforms.core import RestrictionProvider
from apache_beam.utils.timestamp import Duration, Timestamp

from transforms.archive import SourcedRecord

_LOG = logging.getLogger(__name__)
_END = 2 ** 63 - 1
_T = TypeVar("_T")

# What librdkafka says while the broker is down or restarting: each clears once it is back.
BROKER_AWAY = frozenset({
    "_TIMED_OUT", "_WAIT_COORD", "_TRANSPORT", "_ALL_BROKERS_DOWN", "_MSG_TIMED_OUT", "REQUEST_TIMED_OUT",
    "COORDINATOR_NOT_AVAILABLE", "NOT_COORDINATOR", "COORDINATOR_LOAD_IN_PROGRESS", "NETWORK_EXCEPTION",
    "LEADER_NOT_AVAILABLE", "NOT_LEADER_FOR_PARTITION"})


def broker_away(error) -> bool:
    """Is this KafkaError one that only says the broker is not answering yet?"""
    name = getattr(error, "name", None)
    return callable(name) and name() in BROKER_AWAY


def until_broker_answers(call: Callable[[], _T], what: str, pause: float = 1.0) -> _T:
    """`call()`, retried for as long as it fails only because the broker is away."""
    from confluent_kafka import KafkaException

    while True:
        try:
            return call()
        except KafkaException as exc:
            error = exc.args[0] if exc.args else None
            if not broker_away(error):
                raise
            _LOG.warning("kafka %s: %s; waiting for the broker", what, error.name())
            time.sleep(pause)


class KafkaPosition(NamedTuple):
    """Where a record was read: `since` is the offset the reader was at before it, so
    a chain since -> offset + 1 spans gaps (transaction markers, compaction)."""

    topic: str
    partition: int
    offset: int
    since: int


class ReadFromKafkaTopic(beam.PTransform):
    def __init__(self, bootstrap_servers: str, topic: str, group_id: str, start: str = "earliest",
                 consumer_config: dict | None = None, max_records: int = 500, poll_seconds: float = 0.2):
        super().__init__()
        if start not in ("earliest", "latest"):
            raise ValueError("start must be earliest or latest")
        self._config = {"bootstrap.servers": bootstrap_servers, "group.id": group_id,
                        "enable.auto.commit": False, "auto.offset.reset": start,
                        # librdkafka prefetches up to 64 MB per partition by default: a
                        # reader that lags would hold that much of the backlog in memory.
                        "queued.max.messages.kbytes": 4096,
                        **(consumer_config or {})}
        self._topic = topic
        self._max_records = max_records
        self._poll_seconds = poll_seconds

    def expand(self, pbegin):
        return (pbegin
                | "Impulse" >> beam.Impulse()
                | "Partitions" >> beam.ParDo(_PartitionStartsFn(self._config, self._topic))
                | "Read" >> beam.ParDo(_ReadPartitionFn(self._config, self._max_records, self._poll_seconds)))


class _PartitionStartsFn(beam.DoFn):
    """Each partition with the group's committed offset; a new group's start is
    committed first, so the reader and the committer agree where it begins."""

    def __init__(self, config: dict, topic: str):
        self._config, self._topic = config, topic

    def process(self, _):
        from confluent_kafka import Consumer, TopicPartition

        consumer = Consumer(self._config)
        try:
            metadata = consumer.list_topics(self._topic, timeout=30)
            topic = metadata.topics.get(self._topic)
            if topic is None or topic.error is not None or not topic.partitions:
                raise RuntimeError(f"Kafka topic {self._topic} does not exist or has no partitions")
            partitions = [TopicPartition(self._topic, p) for p in sorted(topic.partitions)]
            committed = consumer.committed(partitions, timeout=30)
            pins = []
            for tp in committed:
                if tp.offset < 0:
                    low, high = consumer.get_watermark_offsets(tp, timeout=30)
                    tp = TopicPartition(self._topic, tp.partition,
                                        low if self._config["auto.offset.reset"] == "earliest" else high)
                    pins.append(tp)
                yield (self._topic, tp.partition, tp.offset)
            if pins:
                consumer.commit(offsets=pins, asynchronous=False)
        finally:
            consumer.close()


class _CheckpointOnlyTracker(OffsetRestrictionTracker):
    """A partition is read in order by one reader: the runner may checkpoint it
    (split at the current position) but not cut its infinite range in two, which
    would hand a second reader a made-up offset in the middle of nowhere."""

    def try_split(self, fraction_of_remainder):
        if fraction_of_remainder > 0:
            return None
        return super().try_split(0)


class _PartitionRestrictions(RestrictionProvider):
    def initial_restriction(self, element):
        return OffsetRange(element[2], _END)

    def create_tracker(self, restriction):
        return _CheckpointOnlyTracker(restriction)

    def restriction_size(self, element, restriction):
        return 1  # unbounded: no size to tell

    def split(self, element, restriction):
        yield restriction  # one reader per partition

    def truncate(self, element, restriction):
        return None  # on drain, stop reading


_READERS: dict[tuple, list] = {}   # reader config -> [DoFn instances set up, {(topic, partition): entry}]


class _ReadPartitionFn(beam.DoFn):
    def __init__(self, config: dict, max_records: int, poll_seconds: float):
        self._config = config
        self._max_records = max_records
        self._poll_seconds = poll_seconds
        self._records = Metrics.counter("kafka", "records_read")

    def setup(self):
        # One consumer per partition in the process, whichever DoFn instance (the runner
        # makes one per concurrent bundle) reads it next: a partition's restriction is
        # processed by one bundle at a time, and the entry remembers where it stands.
        self._key = _config_key(self._config)
        with _SHARED_LOCK:
            shared = _READERS.setdefault(self._key, [0, {}])
            shared[0] += 1
        self._consumers = shared[1]

    def teardown(self):
        with _SHARED_LOCK:
            shared = _READERS.get(getattr(self, "_key", None))
            if shared is None:
                return
            shared[0] -= 1
            if shared[0] > 0:
                return
            del _READERS[self._key]
        for consumer, _ in shared[1].values():
            consumer.close()

    def _consumer(self, topic: str, partition: int, offset: int):
        from confluent_kafka import Consumer, TopicPartition

        key = (topic, partition)
        with _SHARED_LOCK:
            entry = self._consumers.get(key)
            if entry is None:
                consumer = Consumer({**self._config, "group.id": self._config["group.id"] + ".reader"})
                consumer.assign([TopicPartition(topic, partition, offset)])
                self._consumers[key] = entry = [consumer, offset]
                return entry
        if entry[1] != offset:
            entry[0].seek(TopicPartition(topic, partition, offset))
            entry[1] = offset
        return entry

    @beam.DoFn.unbounded_per_element()
    def process(self, element, tracker=beam.DoFn.RestrictionParam(_PartitionRestrictions()),
                watermark=beam.DoFn.WatermarkEstimatorParam(ManualWatermarkEstimator.default_provider())):
        topic, partition, _ = element
        position = tracker.current_restriction().start
        entry = self._consumer(topic, partition, position)
        # Wait for the first record only, then take what has arrived with it: a batch
        # under load, no added wait when the stream is thin.
        first = entry[0].poll(self._poll_seconds)
        records = [] if first is None else [first, *entry[0].consume(self._max_records - 1, timeout=0)]
        since = position
        for record in records:
            if record.error() is not None:
                _LOG.warning("kafka %s/%d: %s", topic, partition, record.error())
                continue
            offset = record.offset()
            if not tracker.try_claim(offset):
                # The runner checkpointed us mid-batch: the consumer has fetched past
                # what we claimed, so the next call must seek back, not read on.
                entry[1] = None
                return
            millis = record.timestamp()[1]
            stamp = Timestamp(micros=millis * 1000) if millis and millis > 0 else Timestamp.now()
            if watermark.current_watermark() is None or stamp > watermark.current_watermark():
                watermark.set_watermark(stamp)
            self._records.inc()
            entry[1] = offset + 1
            yield beam.window.TimestampedValue(SourcedRecord(
                record.value() or b"", f"kafka://{topic}/{partition}@{offset}",
                KafkaPosition(topic, partition, offset, since)), stamp)
            since = offset + 1
        if not records:
            now = Timestamp.now() - Duration.of(1)
            if watermark.current_watermark() is None or now > watermark.current_watermark():
                watermark.set_watermark(now)  # idle partition: time moves on
        tracker.defer_remainder(Duration.of(0 if records else self._poll_seconds))


_SHARED_LOCK = threading.Lock()
_PRODUCERS: dict[tuple, list] = {}   # config -> [producer, sinks holding it]


def _config_key(config: dict) -> tuple:
    return tuple(sorted((k, repr(v)) for k, v in config.items()))


def shared_producer(config: dict):
    """One producer per configuration in the process, for every sink and bundle: each
    client has its own librdkafka threads and broker connections, and a runner makes
    a DoFn instance per concurrent bundle (on Prism the job had 20 Kafka clients,
    costing the broker and the harness more CPU than the archiving did).
    Each caller gives it back with `release_producer`; the last one closes it."""
    from confluent_kafka import Producer

    with _SHARED_LOCK:
        entry = _PRODUCERS.get(_config_key(config))
        if entry is None:
            entry = _PRODUCERS[_config_key(config)] = [Producer(config), 0]
        entry[1] += 1
        return entry[0]


def release_producer(config: dict) -> None:
    with _SHARED_LOCK:
        entry = _PRODUCERS.get(_config_key(config))
        if entry is None:
            return
        entry[1] -= 1
        if entry[1] > 0:
            return
        del _PRODUCERS[_config_key(config)]
    entry[0].flush(5)  # whatever is left was never flushed by its sink: a last try, not a promise


class KafkaTopicSink:
    """Produces records to one topic (acks=all, idempotent) through the process's
    shared producer; `flush` returns once every record this sink added is
    acknowledged, waiting as long as the broker is away, or raises when the broker
    refused one."""

    _WARN_EVERY_S = 60.0

    def __init__(self, bootstrap_servers: str, topic: str, producer_config: dict | None = None):
        self.topic = topic
        # message.timeout.ms 0: a record is never given up on while the broker is away.
        self._config = {"bootstrap.servers": bootstrap_servers, "acks": "all",
                        "enable.idempotence": True, "linger.ms": 5, "message.timeout.ms": 0,
                        **(producer_config or {})}
        self._producer = None
        self._produced = 0
        self._acked: list = []    # one entry per acknowledgement: list.append is atomic, from any thread
        self._errors: list = []

    def add(self, key: bytes | None, value: bytes, headers: list | None = None) -> None:
        if self._producer is None:
            self._producer = shared_producer(self._config)
        while True:
            try:
                self._producer.produce(self.topic, value=value, key=key, headers=headers or [],
                                       on_delivery=self._delivered)
                break
            except BufferError:  # local queue full: let it drain
                self._producer.poll(0.1)
        self._produced += 1
        if self._produced % 64 == 0:  # acknowledgements are served in flush; each poll drops the GIL
            self._producer.poll(0)

    def _delivered(self, error, _message):  # on whichever thread polls the shared producer
        if error is not None:
            self._errors.append(error)
        self._acked.append(None)

    def flush(self) -> None:
        if self._producer is None:
            return
        self._producer.flush(0)  # send what lingers now
        started = warned = time.monotonic()
        while len(self._acked) < self._produced and not self._errors:
            self._producer.poll(0.005)
            now = time.monotonic()
            if now - warned >= self._WARN_EVERY_S:
                warned = now
                _LOG.warning("kafka produce to %s: %d record(s) not acknowledged after %.0f s; waiting "
                             "for the broker", self.topic, self._produced - len(self._acked), now - started)
        remaining = self._produced - len(self._acked)
        errors, self._errors = self._errors, []
        self._produced, self._acked = 0, []
        if errors:
            raise RuntimeError(f"Kafka produce to {self.topic} failed: {remaining} undelivered, "
                               f"errors {errors[:3]}")

    def close(self) -> None:
        """Give the shared producer back (after `flush`, nothing of this sink is pending)."""
        if self._producer is not None:
            self._producer = None
            release_producer(self._config)


class FinishedSpans(NamedTuple):
    """Records of one partition whose results are durable, as spans [since, end) of
    the reader's chain (a record read at offset o, the reader having stood at s,
    spans [s, o + 1)); consecutive records make one span."""

    topic: str
    partition: int
    spans: tuple[tuple[int, int], ...]


def finished_spans(positions: Iterable[KafkaPosition]) -> list[FinishedSpans]:
    """The positions of a bundle's finished records, one element per partition:
    what the committer needs, in as few elements (state reads) as possible."""
    by_partition: dict[tuple[str, int], list[tuple[int, int]]] = {}
    for position in positions:
        by_partition.setdefault((position.topic, position.partition), []).append(
            (position.since, position.offset + 1))
    finished = []
    for (topic, partition), spans in sorted(by_partition.items()):
        merged: list[tuple[int, int]] = []
        for since, end in sorted(spans):
            if merged and merged[-1][1] == since:
                merged[-1] = (merged[-1][0], end)
            else:
                merged.append((since, end))
        finished.append(FinishedSpans(topic, partition, tuple(merged)))
    return finished


def advance(committed: int, done: dict[int, int], spans: Iterable[tuple[int, int]]) -> tuple[int, dict[int, int]]:
    """The offset to commit once `spans` are finished too, and the spans still
    waiting for a gap before them to finish. What lies below `committed` is a
    replay of what is already committed."""
    done = dict(done)
    for since, end in spans:
        if end > committed:
            since = max(since, committed)  # the part at or above the commit point
            done[since] = max(end, done.get(since, end))
    while committed in done:
        committed = done.pop(committed)
    return committed, {since: end for since, end in done.items() if since > committed}


class CommitKafkaOffsets(beam.PTransform):
    """Commit, per partition, the offset after the longest run of finished records.

    Input: FinishedSpans (see `finished_spans`)."""

    def __init__(self, bootstrap_servers: str, group_id: str):
        super().__init__()
        self._config = {"bootstrap.servers": bootstrap_servers, "group.id": group_id,
                        "enable.auto.commit": False}

    def expand(self, finished):
        return (finished
                | "ByPartition" >> beam.Map(lambda f: (f"{f.topic}/{f.partition}", f))
                | "Commit" >> beam.ParDo(_CommitFn(self._config)))


class _CommitFn(beam.DoFn):
    NEXT = userstate.ReadModifyWriteStateSpec("next", PickleCoder())
    DONE = userstate.ReadModifyWriteStateSpec("done", PickleCoder())

    def __init__(self, config: dict):
        self._config = config
        self._commits = Metrics.counter("kafka", "offset_commits")

    def setup(self):
        self._client = None

    def _consumer(self):
        from confluent_kafka import Consumer

        if self._client is None:
            self._client = Consumer(self._config)
        return self._client

    def teardown(self):
        client, self._client = getattr(self, "_client", None), None
        if client is not None:
            client.close()

    def process(self, element, next_state=beam.DoFn.StateParam(NEXT), done_state=beam.DoFn.StateParam(DONE)):
        from confluent_kafka import TopicPartition

        _, finished = element
        next_offset = next_state.read()
        if next_offset is None:
            [tp] = until_broker_answers(lambda: self._consumer().committed(
                [TopicPartition(finished.topic, finished.partition)], timeout=30), "read committed offset")
            next_offset = tp.offset if tp.offset >= 0 else min(since for since, _ in finished.spans)
        advanced, done = advance(next_offset, done_state.read() or {}, finished.spans)
        done_state.write(done)
        next_state.write(advanced)
        if advanced != next_offset:
            until_broker_answers(lambda: self._consumer().commit(
                offsets=[TopicPartition(finished.topic, finished.partition, advanced)], asynchronous=False),
                "commit offset")
            self._commits.inc()
            yield (finished.topic, finished.partition, advanced)


class ReadFromKafkaXlang(beam.PTransform):
    """Beam's Java KafkaIO through an expansion service, for Flink and Dataflow.

    KafkaIO tracks and commits its own offsets (commit_offset_in_finalize), so
    records carry no position for CommitKafkaOffsets.
    """

    def __init__(self, bootstrap_servers: str, topic: str, group_id: str, start: str,
                 expansion_service: str):
        super().__init__()
        self._config = {"bootstrap.servers": bootstrap_servers, "group.id": group_id,
                        "auto.offset.reset": start}
        self._topic, self._expansion_service = topic, expansion_service

    def expand(self, pbegin):
        from apache_beam.io.kafka import ReadFromKafka

        topic = self._topic
        return (pbegin
                | "KafkaIO" >> ReadFromKafka(consumer_config=self._config, topics=[topic],
                                             commit_offset_in_finalize=True,
                                             expansion_service=self._expansion_service)
                | "Record" >> beam.Map(lambda kv: SourcedRecord(kv[1] or b"", f"kafka://{topic}")))
