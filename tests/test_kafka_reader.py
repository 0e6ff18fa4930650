"""The Kafka reader DoFn driven by hand against a real broker: what a runner's
checkpoint in the middle of a batch must not lose."""

from apache_beam.io.restriction_trackers import OffsetRange, OffsetRestrictionTracker
from apache_beam.io.watermark_estimators import ManualWatermarkEstimator
from confluent_kafka import Producer

from pipeline.kafka import _ReadPartitionFn
from tests.test_streaming import broker  # noqa: F401  the module's Kafka broker fixture


class CheckpointAfter(OffsetRestrictionTracker):
    """Refuses claims after `allowed`, as when the runner checkpoints mid-batch."""

    def __init__(self, restriction, allowed):
        super().__init__(restriction)
        self.allowed = allowed

    def try_claim(self, position):
        if self.allowed == 0:
            self.try_split(0)
            return False
        self.allowed -= 1
        return super().try_claim(position)

    def defer_remainder(self, deferred_time=None):
        """What the runner's tracker view adds; the split itself is not needed here."""


def read(fn, start, allowed):
    tracker = CheckpointAfter(OffsetRange(start, 2 ** 63 - 1), allowed)
    estimator = ManualWatermarkEstimator(None)
    out = list(fn.process(("reader-topic", 0, start), tracker=tracker, watermark=estimator))
    return [tv.value for tv in out], tracker.current_restriction().stop


def test_records_left_unclaimed_by_a_checkpoint_are_read_by_the_next_call(broker):  # noqa: F811
    broker.create_topic("reader-topic", partitions=1)
    producer = Producer({"bootstrap.servers": broker.bootstrap_servers})
    for i in range(30):
        producer.produce("reader-topic", f"m{i}".encode(), partition=0)
    producer.flush(10)
    fn = _ReadPartitionFn({"bootstrap.servers": broker.bootstrap_servers, "group.id": "reader-test",
                           "enable.auto.commit": False, "auto.offset.reset": "earliest"}, 500, 2.0)
    fn.setup()
    try:
        seen, position = [], 0
        for _ in range(20):
            records, _ = read(fn, position, allowed=7)   # a checkpoint after 7 claims, every call
            seen += records
            if records:
                position = records[-1].position.offset + 1
            if len(seen) >= 30:
                break
    finally:
        fn.teardown()
    assert [r.data for r in seen] == [f"m{i}".encode() for i in range(30)]
    assert [r.position.offset for r in seen] == list(range(30))
    # each record names where its reader stood, so the committer can chain them
    assert all(r.position.since == r.position.offset for r in seen)


def test_reader_instances_share_one_consumer_per_partition_and_read_on_in_turn(broker):  # noqa: F811
    """A runner makes a DoFn instance per concurrent bundle; a partition's successive
    bundles may land on any of them. They share the process's consumer for it and
    go on where the last one stopped, nothing skipped, nothing twice."""
    broker.create_topic("shared-reader-topic", partitions=1)
    producer = Producer({"bootstrap.servers": broker.bootstrap_servers})
    for i in range(40):
        producer.produce("shared-reader-topic", f"s{i}".encode(), partition=0)
    producer.flush(10)
    config = {"bootstrap.servers": broker.bootstrap_servers, "group.id": "shared-reader-test",
              "enable.auto.commit": False, "auto.offset.reset": "earliest"}
    first, second = _ReadPartitionFn(config, 500, 2.0), _ReadPartitionFn(config, 500, 2.0)
    first.setup()
    second.setup()
    try:
        assert first._consumers is second._consumers
        seen, position = [], 0
        for turn in range(40):
            fn = (first, second)[turn % 2]
            tracker = CheckpointAfter(OffsetRange(position, 2 ** 63 - 1), 6)
            out = [tv.value for tv in fn.process(("shared-reader-topic", 0, position), tracker=tracker,
                                                 watermark=ManualWatermarkEstimator(None))]
            seen += out
            if out:
                position = out[-1].position.offset + 1
            if len(seen) >= 40:
                break
        assert len(first._consumers) == 1  # one consumer for the partition, not one per instance
    finally:
        first.teardown()
        consumers = second._consumers
        assert consumers  # still in use by the second instance
        second.teardown()
    assert [r.data for r in seen] == [f"s{i}".encode() for i in range(40)]


def test_sinks_share_one_producer_and_each_flush_waits_for_its_own_records(broker):  # noqa: F811
    from confluent_kafka import Consumer

    from pipeline.kafka import KafkaTopicSink

    for topic in ("sink-a", "sink-b"):
        broker.create_topic(topic, partitions=1)
    a, b = KafkaTopicSink(broker.bootstrap_servers, "sink-a"), KafkaTopicSink(broker.bootstrap_servers, "sink-b")
    for i in range(100):
        a.add(None, f"a{i}".encode())
    b.add(None, b"b0")
    assert a._producer is b._producer
    b.flush()
    a.flush()
    assert (a._produced, b._produced) == (0, 0)
    a.flush()  # nothing pending: returns at once
    consumer = Consumer({"bootstrap.servers": broker.bootstrap_servers, "group.id": "sink-check",
                         "auto.offset.reset": "earliest"})
    consumer.subscribe(["sink-a", "sink-b"])
    got = []
    while len(got) < 101:
        message = consumer.poll(10)
        assert message is not None, f"only {len(got)} records arrived"
        if message.error() is None:
            got.append(message.value())
    consumer.close()
    assert sorted(got) == sorted([f"a{i}".encode() for i in range(100)] + [b"b0"])
    from pipeline import kafka as kafka_module

    a.close()
    assert kafka_module._PRODUCERS  # b still holds it
    b.close()
    assert not any(key for key in kafka_module._PRODUCERS if ("'bootstrap.servers'", repr(broker.bootstrap_servers))
                   in key), "the last sink closed the shared producer"
