"""Which Kafka offset may be committed: the pure pieces of the committer, as tables."""

import pytest

from pipeline.kafka import FinishedSpans, KafkaPosition, advance, finished_spans


def at(offset, since=None, partition=0, topic="t"):
    return KafkaPosition(topic, partition, offset, offset if since is None else since)


@pytest.mark.parametrize("positions, expected", [
    ([], []),
    ([at(5)], [FinishedSpans("t", 0, ((5, 6),))]),
    # consecutive records chain into one span, whatever order they finished in
    ([at(7), at(5), at(6)], [FinishedSpans("t", 0, ((5, 8),))]),
    # a gap (a record still in flight) keeps two spans
    ([at(5), at(7)], [FinishedSpans("t", 0, ((5, 6), (7, 8)))]),
    # a record read after a gap in the log (a transaction marker) chains from where the reader stood
    ([at(5), at(8, since=6)], [FinishedSpans("t", 0, ((5, 9),))]),
    # one element per partition and topic
    ([at(1, partition=1), at(0, partition=0), at(2, partition=1), at(0, topic="u")],
     [FinishedSpans("t", 0, ((0, 1),)), FinishedSpans("t", 1, ((1, 3),)), FinishedSpans("u", 0, ((0, 1),))]),
    # a replayed record that finished twice
    ([at(5), at(5)], [FinishedSpans("t", 0, ((5, 6), (5, 6)))]),
], ids=["none", "one", "chained", "gap", "log-gap", "partitions", "replayed"])
def test_finished_spans(positions, expected):
    assert finished_spans(positions) == expected


@pytest.mark.parametrize("committed, done, spans, expected", [
    (5, {}, [(5, 8)], (8, {})),
    # a span after a gap waits for the gap
    (5, {}, [(7, 9)], (5, {7: 9})),
    # the gap fills: both commit
    (5, {7: 9}, [(5, 7)], (9, {})),
    # spans of one bundle that chain through what was waiting
    (0, {4: 6, 8: 9}, [(0, 4), (6, 8)], (9, {})),
    # a replay of what is committed changes nothing
    (10, {}, [(3, 4), (9, 10)], (10, {})),
    # a span from below the commit point (a replay merged with new records) counts above it
    (10, {}, [(9, 12)], (12, {})),
    (10, {}, [(9, 12), (14, 15)], (12, {14: 15})),
    # the longer of two spans from the same start wins
    (0, {0: 3}, [(0, 2)], (3, {})),
    # nothing new: nothing moves
    (5, {7: 9}, [], (5, {7: 9})),
], ids=["contiguous", "gap", "filled", "chain", "replay", "straddling", "straddling-then-gap", "longer",
        "empty"])
def test_advance(committed, done, spans, expected):
    assert advance(committed, done, spans) == expected
