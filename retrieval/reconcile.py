"""Reconcile: every message the gate released for delivery has its archived object.

    --deliveries FILE | FOLDER | GLOB   (the stream's --deliveries folder sink: JSON Lines delivery records)
    --deliveries kafka://TOPIC          (the stream's Kafka delivery topic, read from its start to its end;
                                         each record's headers name its message id and archive url)
         ──> Delivery(message_id, tenant, archive_url, archive_sha256[, byte_offset, bytes])
         ──> the object under that url: read back, sha256 compared with the delivery's (or the index's);
             a batched object's: the frame its outcome names (archive_byte_offset, archive_bytes; else
             the index's row of that message in that object), read alone with a byte-range GET
         ──> counts: delivered, archived and intact, delivered without an archive, missing, changed, not indexed

The gate releases only ARCHIVED messages, so any finding here means something
went wrong after the fact (an object deleted or changed, a bucket restored
from an older copy) or before it (a delivery path that bypassed the gate).
"""

from __future__ import annotations

import glob
import json
import os
from dataclasses import dataclass
from typing import Iterator

from typing import Iterable

from archive.audit import BATCH_ROOT, ROOT, Layout, parse_batch_key, parse_key


class DeliveriesError(ValueError):
    """The delivery records cannot be read as asked (a usage error)."""


@dataclass(frozen=True)
class Delivery:
    message_id: str | None
    tenant: str | None
    archive_url: str | None
    archive_sha256: str | None
    where: str
    byte_offset: int | None = None   # a batched object: where the message's frame starts
    length: int | None = None        # ... and its bytes


def archive_key(url: str | None, layouts: Iterable[Layout] = (), roots: Iterable[str] = ()) -> str | None:
    """The archive key inside a delivery's archive_url: what follows one of `roots` (the
    destinations' own URLs), else what follows an archive prefix (sent_messages/,
    sent_batches/, a key template's) wherever it stands. None when that is no key of
    the seeds' layouts, of `layouts`, or of a batched object."""
    if not url:
        return None
    layouts = tuple(layouts)

    def archive(key: str) -> bool:
        return parse_key(key, layouts) is not None or parse_batch_key(key) is not None

    for root in roots:
        root = root.rstrip("/") + "/"
        if url.startswith(root) and archive(url[len(root):]):
            return url[len(root):]
    prefixes = [ROOT, BATCH_ROOT] + [layout.template.prefix for layout in layouts]
    for prefix in prefixes:
        marker, start = f"/{prefix}/", 0
        while (found := url.find(marker, start)) != -1:
            key = url[found + 1:]
            if archive(key):
                return key
            start = found + 1
    return None


def from_files(pattern: str) -> Iterator[Delivery]:
    paths = sorted(glob.glob(os.path.join(pattern, "*.jsonl")) if os.path.isdir(pattern) else glob.glob(pattern))
    if not paths:
        raise DeliveriesError("no delivery files match --deliveries")
    for path in paths:
        with open(path, "rb") as handle:
            for number, line in enumerate(handle, 1):
                if not line.strip():
                    continue
                where = f"{os.path.basename(path)}:{number}"
                try:
                    record = json.loads(line)
                except ValueError:
                    yield Delivery(None, None, None, None, where)
                    continue
                if not isinstance(record, dict):
                    record = {}
                yield Delivery(_text(record.get("message_id")), _text(record.get("tenant")),
                               _text(record.get("archive_url")), _text(record.get("archive_sha256")), where,
                               _count(record, "archive_byte_offset", "byte_offset"),
                               _count(record, "archive_bytes", "bytes"))


def from_kafka(topic: str, bootstrap_servers: str, timeout: float = 30.0) -> Iterator[Delivery]:
    """Every record of the topic, from its start to the end it had when reading began."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap_servers, "group.id": "message-archiver-reconcile",
                         "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    try:
        metadata = consumer.list_topics(topic, timeout=timeout)
        if topic not in metadata.topics or metadata.topics[topic].error is not None:
            raise DeliveriesError("the --deliveries topic does not exist")
        ends = {}
        for partition in metadata.topics[topic].partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=timeout)
            if high > low:
                ends[partition] = high
        consumer.assign([TopicPartition(topic, p, 0) for p in ends])
        left = dict(ends)
        while left:
            record = consumer.poll(timeout)
            if record is None:
                raise DeliveriesError("the --deliveries topic stopped answering before its end")
            if record.error():
                continue
            partition, offset = record.partition(), record.offset()
            headers = {k: (v or b"").decode("utf-8", "replace") for k, v in (record.headers() or [])}
            if partition in left:
                yield Delivery(headers.get("message_id"), None, headers.get("archive_url"),
                               headers.get("archive_sha256"), f"{topic}/{partition}@{offset}",
                               _count(headers, "archive_byte_offset"), _count(headers, "archive_bytes"))
                if offset + 1 >= left[partition]:
                    del left[partition]
    finally:
        consumer.close()


def _text(value) -> str | None:
    return value if isinstance(value, str) else None


def _count(record, *names) -> int | None:
    """A non-negative whole number under the first of `names` present (a header's text too)."""
    for name in names:
        value = record.get(name)
        if isinstance(value, str) and value.isascii() and value.isdigit():
            value = int(value)
        if type(value) is int and value >= 0:
            return value
    return None
