"""Reconcile: every message the gate released for delivery has its archived object.

    --deliveries FILE | FOLDER | GLOB   (the stream's --deliveries folder sink: JSON Lines delivery records)
    --deliveries kafka://TOPIC          (the stream's Kafka delivery topic, read from its start to its end;
                                         each record's headers name its message id and archive url)
         ──> Delivery(message_id, tenant, archive_url, archive_sha256)
         ──> the object under that url: read back, sha256 compared with the delivery's (or the index's)
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

from archive.audit import ROOT, parse_key


class DeliveriesError(ValueError):
    """The delivery records cannot be read as asked (a usage error)."""


@dataclass(frozen=True)
class Delivery:
    message_id: str | None
    tenant: str | None
    archive_url: str | None
    archive_sha256: str | None
    where: str


def archive_key(url: str | None) -> str | None:
    """The archive key inside a delivery's archive_url (whatever the destination's prefix)."""
    if not url or f"/{ROOT}/" not in url:
        return None
    key = ROOT + "/" + url.split(f"/{ROOT}/", 1)[1]
    return key if parse_key(key) is not None else None


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
                               _text(record.get("archive_url")), _text(record.get("archive_sha256")), where)


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
                yield Delivery(headers.get("message_id"), None, headers.get("archive_url"), None,
                               f"{topic}/{partition}@{offset}")
                if offset + 1 >= left[partition]:
                    del left[partition]
    finally:
        consumer.close()


def _text(value) -> str | None:
    return value if isinstance(value, str) else None
