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
