"""archive.batches: which batch a message joins, how a batch is cut into parts, and their keys."""

import hashlib

import pytest

from archive import frames
from archive.batches import BatchKey, BatchLimits, Member, assemble, batch_of, object_key, parse_object_key, plan

DAY = 86_400_000
T = 1722443282680  # 2024-07-31T16:28:02.680Z


@pytest.mark.parametrize("limits, why", [
    (BatchLimits(seconds=0), "seconds"), (BatchLimits(seconds=7), "divide a day"),
    (BatchLimits(seconds=86_401), "seconds"), (BatchLimits(max_messages=0), "max_messages"),
    (BatchLimits(max_bytes=100), "max_bytes"), (BatchLimits(shards=0), "shards"),
    (BatchLimits(shards=True), "shards"), (BatchLimits(seconds=60.0), "seconds"),
    (BatchLimits(max_messages=10**9), "max_messages"),
])
def test_limits_that_cannot_work_are_refused(limits, why):
    with pytest.raises(ValueError, match=why):
        limits.check()


@pytest.mark.parametrize("when, start", [
    (T, T - T % 60_000), (0, 0), (59_999, 0), (60_000, 60_000), (DAY - 1, DAY - 60_000),
])
def test_a_message_joins_the_window_its_time_falls_in(when, start):
    assert batch_of("acme", "sms", "m1", when, BatchLimits()).window_start_ms == start


def test_the_shard_is_a_function_of_the_message_id_alone():
    limits = BatchLimits(shards=16)
    shards = {batch_of("t", "sms", f"m{i}", T, limits).shard for i in range(2000)}
    assert shards == set(range(16))
    assert batch_of("t", "sms", "m7", T, limits) == batch_of("t", "sms", "m7", T + 1, limits)
    expected = int.from_bytes(hashlib.sha256(b"m7").digest()[:8], "big") % 16
    assert batch_of("t", "sms", "m7", T, limits).shard == expected


def members(count, size=10):
    return [Member(f"m{i:05d}", frames.frame("lz4", b'{"x":"' + b"y" * size + b'"}')) for i in range(count)]


def test_parts_are_cut_at_max_messages_in_message_id_order_whatever_the_arrival_order():
    given = members(25)
    parts = plan(list(reversed(given)), BatchLimits(max_messages=10))
    assert [len(p) for p in parts] == [10, 10, 5]
    assert [m for p in parts for m in p] == sorted(given)
    assert plan(given, BatchLimits(max_messages=10)) == parts  # the same parts from any order


def test_parts_are_cut_at_max_bytes_and_a_frame_larger_than_the_limit_stands_alone():
    small, big = members(3), Member("m00001x", b"z" * 5000)
    parts = plan(small + [big], BatchLimits(max_bytes=1024))
    assert all(sum(len(m.frame) for m in p) <= 1024 or len(p) == 1 for p in parts)
    assert [big] in parts
    assert sorted(m for p in parts for m in p) == sorted(small + [big])


def test_an_identical_message_given_twice_is_written_once_and_a_different_one_with_the_same_id_is_kept():
    one = members(1)[0]
    other = Member(one.message_id, frames.frame("lz4", b'{"x":"other"}'))
    parts = plan([one, one, other], BatchLimits())
    assert parts == [sorted([one, other])]


def test_assemble_places_each_frame_where_a_range_read_finds_it():
    part = members(50, size=100)
    data, placed = assemble(part)
    assert [frames.Span(p.offset, p.length) for p in placed] == frames.spans("lz4", data)
    for where in placed:
        assert data[where.offset:where.offset + where.length] == where.member.frame


@pytest.mark.parametrize("batch, part, suffix, key", [
    (BatchKey("acme", "sms", T - T % 60_000, 0), 0, ".lz4",
     "sent_batches/acme/sms/2024/07/31/162800-s0000-p0000.jsonl.lz4"),
    (BatchKey("a.b@c:d", "email", 0, 4095), 12, ".gz",
     "sent_batches/a.b@c:d/email/1970/01/01/000000-s4095-p0012.jsonl.gz"),
    (BatchKey("t", "push", DAY - 1000, 3), 0, "", "sent_batches/t/push/1970/01/01/235959-s0003-p0000.jsonl"),
])
def test_object_keys_read_back(batch, part, suffix, key):
    assert object_key(batch, part, suffix) == key
    parsed = parse_object_key(key)
    assert (parsed.tenant, parsed.channel, parsed.window_start_ms, parsed.shard, parsed.part, parsed.suffix) == (
        batch.tenant, batch.channel, batch.window_start_ms, batch.shard, part, suffix)


@pytest.mark.parametrize("key", [
    "sent_batches/acme/sms/2024/07/31/162800-s0000.jsonl.lz4",
    "sent_batches/acme/sms/2024/13/31/162800-s0000-p0000.jsonl.lz4",
    "sent_batches/../sms/2024/07/31/162800-s0000-p0000.jsonl.lz4",
    "sent_batches/acme//2024/07/31/162800-s0000-p0000.jsonl.lz4",
    "sent_batches/acme/sms/2024/07/31/x/162800-s0000-p0000.jsonl.lz4",
    "sent_messages/acme/sms/2024/07/31/162800-s0000-p0000.jsonl.lz4",
    "sent_batches/acme/sms/2024/07/31/162800-sx-p0000.jsonl.lz4",
    "sent_batches/acme/sms/2024/07/31/162800-s0000-p0000.json.lz4",
])
def test_other_keys_are_not_batch_objects(key):
    assert parse_object_key(key) is None
