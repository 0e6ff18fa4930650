"""Batched objects: many messages of one tenant and channel in one object (cost mode).

    prepared message ──batch_of──> BatchKey (tenant, channel, window start, shard)
    a window's messages of one BatchKey ──plan──> parts, each within the limits
        part ──assemble──> one object: every message its own compressed frame,
                           appended in message-id order, and each message's byte range
    BatchKey + part ──object_key──>
        sent_batches/<tenant>/<channel>/<yyyy>/<mm>/<dd>/<hhmmss>-s<shard>-p<part>.jsonl<.lz4|.gz|.zst|>

One PUT per object instead of one per message. Everything that decides an
object's key and bytes comes from the messages themselves (the window from
the source's stamp or sent_at, the shard from the message id, the order from
the message ids), so a replay of the same messages writes the same objects with
the same bytes. A frame is the codec's own output for one JSON line
(archive.frames), so `lz4 -dc`, `gzip -dc` and `zstd -dc` read a whole object as
JSON Lines, and a byte-range GET of one message's range reads that message alone.

Nothing here does I/O or knows Beam: transforms.batches groups and writes.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
from dataclasses import dataclass
from typing import NamedTuple, Sequence

ROOT = "sent_batches"
OBJECT_MODES = ("message", "batched")


@dataclass(frozen=True)
class BatchLimits:
    """How much one object may hold: a window of `seconds`, cut at `max_messages`
    or `max_bytes` (of compressed frames), spread over `shards` objects per window."""

    seconds: int = 60
    max_messages: int = 10_000
    max_bytes: int = 64 * 1024 * 1024
    shards: int = 1

    def check(self) -> None:
        for name, low, high in (("seconds", 1, 86_400), ("max_messages", 1, 10_000_000),
                                ("max_bytes", 1024, 5 * 1024 ** 3), ("shards", 1, 4096)):
            value = getattr(self, name)
            if type(value) is not int or not low <= value <= high:
                raise ValueError(f"batch {name} must be a whole number from {low} to {high}")
        if self.seconds != 86_400 and 86_400 % self.seconds:
            raise ValueError("batch seconds must divide a day (windows start at the same times every day)")


class BatchKey(NamedTuple):
    tenant: str
    channel: str
    window_start_ms: int
    shard: int


def batch_of(tenant: str, channel: str, message_id: str, window_time_ms: int, limits: BatchLimits) -> BatchKey:
    """The batch one message belongs to: its window (of its stamp) and its shard (of its id)."""
    window_ms = limits.seconds * 1000
    start = window_time_ms - window_time_ms % window_ms
    shard = 0 if limits.shards == 1 else int.from_bytes(
        hashlib.sha256(message_id.encode("utf-8")).digest()[:8], "big") % limits.shards
    return BatchKey(tenant, channel, start, shard)


class Member(NamedTuple):
    """One message of a batch: its id and its frame (archive.frames.frame)."""

    message_id: str
    frame: bytes


def plan(members: Sequence[Member], limits: BatchLimits) -> list[list[Member]]:
    """The batch's parts: members in message-id order (then frame bytes, so equal ids
    from a replay sort the same), one copy of each identical (id, frame), cut when a
    part would pass max_messages or max_bytes. A frame larger than max_bytes is a
    part of its own."""
    unique = sorted(set(members))
    parts: list[list[Member]] = []
    current: list[Member] = []
    size = 0
    for member in unique:
        if current and (len(current) >= limits.max_messages or size + len(member.frame) > limits.max_bytes):
            parts.append(current)
            current, size = [], 0
        current.append(member)
        size += len(member.frame)
    if current:
        parts.append(current)
    return parts


class Placed(NamedTuple):
    member: Member
    offset: int
    length: int


def assemble(part: Sequence[Member]) -> tuple[bytes, list[Placed]]:
    """The object's bytes and where each member's frame lies in them."""
    placed, offset = [], 0
    for member in part:
        placed.append(Placed(member, offset, len(member.frame)))
        offset += len(member.frame)
    return b"".join(m.frame for m in part), placed


def object_key(batch: BatchKey, part: int, suffix: str, channel_folder: str | None = None) -> str:
    """`sent_batches/<tenant>/<channel>/<yyyy>/<mm>/<dd>/<hhmmss>-s<shard>-p<part>.jsonl<suffix>`."""
    moment = _dt.datetime.fromtimestamp(batch.window_start_ms / 1000, tz=_dt.timezone.utc)
    return (f"{ROOT}/{batch.tenant}/{channel_folder or batch.channel}/{moment:%Y/%m/%d}/"
            f"{moment:%H%M%S}-s{batch.shard:04d}-p{part:04d}.jsonl{suffix}")


class BatchKeyFields(NamedTuple):
    tenant: str
    channel: str
    window_start_ms: int
    shard: int
    part: int
    suffix: str


def parse_object_key(key: str) -> BatchKeyFields | None:
    """The fields of a batch object's key, or None for any other key."""
    parts = key.split("/")
    if len(parts) != 7 or parts[0] != ROOT or any(p in ("", ".", "..") for p in parts):
        return None
    _, tenant, channel, yyyy, mm, dd, name = parts
    stem, dot, suffix = name.partition(".jsonl")
    pieces = stem.split("-")
    if not dot or len(pieces) != 3 or not pieces[1].startswith("s") or not pieces[2].startswith("p"):
        return None
    try:
        moment = _dt.datetime.strptime(f"{yyyy}{mm}{dd}{pieces[0]}", "%Y%m%d%H%M%S").replace(
            tzinfo=_dt.timezone.utc)
        shard, part = int(pieces[1][1:]), int(pieces[2][1:])
    except ValueError:
        return None
    return BatchKeyFields(tenant, channel, int(moment.timestamp() * 1000), shard, part, suffix)
