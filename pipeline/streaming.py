"""The real-time path: Kafka or Pub/Sub in, archive, gate, and the three outputs.

    Kafka ─> ArchiveMessages ── each message with its outcome ─> GateDelivery ─┬─ delivered ──────> --deliveries
                                                                               └─ failed_to_archive > --failures
                                                     each verdict's outcome ─────────────────────> --outcomes
    positions of records whose verdict and outcome are both durable ─> CommitKafkaOffsets

Each output is a Kafka topic (kafka://topic), a Pub/Sub topic
(pubsub://projects/P/topics/T) or a folder of JSON Lines files.
"""

from __future__ import annotations

import base64
import json

import apache_beam as beam
from apache_beam.transforms.window import GlobalWindow
from apache_beam.utils.windowed_value import WindowedValue

from archive.gate import DELIVER
from pipeline.kafka import (
    CommitKafkaOffsets, KafkaTopicSink, ReadFromKafkaTopic, ReadFromKafkaXlang, finished_spans)
from pipeline.pubsub import PubSubTopicSink, ReadFromPubSubSubscription
from pipeline.sinks import FolderSink
from transforms.archive import ArchiveMessages
from transforms.gate import GateDelivery, Released


def delivery_record(released: Released) -> dict:
    """What a delivery worker receives: the message as sent to us, and its archive."""
    message, outcome = released.message, released.outcome
    record = {"message_id": message.message_id, "tenant": message.tenant, "channel": message.channel,
              "archive_status": outcome.status if outcome else "NONE",
              "reason": released.decision.reason}
    if outcome is not None and outcome.url:
        record["archive_url"] = outcome.url
        record["archive_sha256"] = outcome.sha256
    if message.attributes:
        record["attributes"] = message.attributes
    try:
        record["message"] = json.loads(message.data)
    except ValueError:
        record["message_base64"] = base64.b64encode(message.data).decode("ascii")
    return record


def _delivery_message(released: Released) -> tuple[bytes, bytes, list]:
    """(key, value, headers) on a Kafka topic: the message as sent to us, keyed by its id."""
    message = released.message
    headers = [("message_id", (message.message_id or "").encode()),
               ("archive_status", (released.outcome.status if released.outcome else "NONE").encode()),
               ("reason", released.decision.reason.encode()[:512])]
    if released.outcome is not None and released.outcome.url:
        headers.append(("archive_url", released.outcome.url.encode()))
    return (message.message_id or message.key).encode(), message.data, headers


def _sink(url: str, name: str, bootstrap_servers: str):
    if url.startswith("kafka://"):
        return KafkaTopicSink(bootstrap_servers, url[len("kafka://"):])
    if url.startswith("pubsub://"):
        return PubSubTopicSink(url[len("pubsub://"):])
    return FolderSink(url, name)


def _publish_verdict(sink, released: Released) -> None:
    """A delivery (or failure) to whichever kind of sink: the message as received,
    keyed by its id, on Kafka or Pub/Sub; a JSON line describing it in a folder."""
    if isinstance(sink, FolderSink):
        sink.add_record(delivery_record(released))
        return
    key, data, headers = _delivery_message(released)
    if isinstance(sink, KafkaTopicSink):
        sink.add(key, data, headers)
    else:
        attributes = dict(released.message.attributes or {})
        attributes.update({k: v.decode() for k, v in headers})
        sink.add(data, attributes)


def _publish_outcome(sink, outcome) -> None:
    """An outcome as JSON: a Kafka message keyed by message id, a Pub/Sub message
    with the id as attribute, or a JSON line."""
    if isinstance(sink, FolderSink):
        sink.add_record(outcome.to_dict())
    elif isinstance(sink, KafkaTopicSink):
        sink.add((outcome.message_id or "").encode(), outcome.to_json().encode())
    else:
        sink.add(outcome.to_json().encode(), {"message_id": outcome.message_id or ""})


class _PublishDecisionsFn(beam.DoFn):
    """Publishes each verdict and its outcome together; once every sink has flushed
    the bundle, the bundle's source positions count as done (and may be committed).

    One DoFn for the three outputs, so a record's position is released only when
    its outcome and its delivery (or failure) record are both durable.
    """

    def __init__(self, outcomes: str, deliveries: str, failures: str, bootstrap_servers: str):
        self._urls = (outcomes, deliveries, failures)
        self._bootstrap_servers = bootstrap_servers

    def setup(self):
        self._outcomes, self._deliveries, self._failures = (
            _sink(url, name, self._bootstrap_servers)
            for url, name in zip(self._urls, ("outcomes", "deliveries", "failures")))

    def start_bundle(self):
        self._positions = []
        self._earliest = None

    def process(self, released: Released, timestamp=beam.DoFn.TimestampParam):
        _publish_verdict(self._deliveries if released.decision.verdict == DELIVER else self._failures, released)
        if released.outcome is not None:
            _publish_outcome(self._outcomes, released.outcome)
        if released.message.position is not None:
            self._positions.append(released.message.position)
            self._earliest = timestamp if self._earliest is None else min(self._earliest, timestamp)

    def finish_bundle(self):
        for sink in (self._outcomes, self._deliveries, self._failures):
            sink.flush()
        for finished in finished_spans(self._positions):  # one element per partition
            yield WindowedValue(finished, self._earliest, (GlobalWindow(),))


def build_streaming(pipeline: beam.Pipeline, options, tenants=None):
    """Add the streaming graph (Kafka or Pub/Sub in); `options` is an ArchiveOptions,
    `tenants` the tenant file already loaded (else loaded from --tenants)."""
    if options.kafka_topic and options.kafka_reader == "xlang":
        if not options.expansion_service:
            raise ValueError("--kafka_reader xlang needs --expansion_service host:port")
        records = pipeline | "ReadKafka" >> ReadFromKafkaXlang(
            options.kafka_bootstrap_servers, options.kafka_topic, options.kafka_group, options.kafka_start,
            options.expansion_service)
    elif options.kafka_topic:
        records = pipeline | "ReadKafka" >> ReadFromKafkaTopic(
            options.kafka_bootstrap_servers, options.kafka_topic, options.kafka_group, options.kafka_start)
    else:
        records = pipeline | "ReadPubSub" >> ReadFromPubSubSubscription(options.pubsub_subscription)
    archived = records | "Archive" >> ArchiveMessages(
        options.store_spec(), options.archiver_config(),
        tenants if tenants is not None else options.tenant_directory(), emit_messages=True)
    # Each message reaches the gate with its own outcome: nothing to wait for.
    gated = archived.messages | "Gate" >> GateDelivery(options.gate_policy)
    done = (
        gated["decided"]
        | "Publish" >> beam.ParDo(_PublishDecisionsFn(
            options.outcomes, options.deliveries, options.failures, options.kafka_bootstrap_servers)))
    if options.kafka_topic and options.kafka_reader == "python":
        done | "CommitOffsets" >> CommitKafkaOffsets(options.kafka_bootstrap_servers, options.kafka_group)
    return gated
