"""The real-time path: Kafka or Pub/Sub in, archive, gate, and the three outputs.

    Kafka ─> ArchiveMessages ── each message with its outcome ─> GateDelivery ─┬─ delivered ──────> --deliveries
                                                                               └─ failed_to_archive > --failures
                                                     each verdict's outcome ─────────────────────> --outcomes
    positions of records whose verdict and outcome are both durable ─> CommitKafkaOffsets
    an index row per ARCHIVED object ─> WriteAuditIndex ─> <destination>/archive_index/ (a file a minute)

Each output is a Kafka topic (kafka://topic), a Pub/Sub topic
(pubsub://projects/P/topics/T) or a folder of JSON Lines files. No record
makes a sink fail: whatever a message holds (invalid UTF-8, lone surrogates,
NaN, NUL), its delivery record is strict JSON with the message kept exactly
(embedded as JSON when that is faithful, else base64 of its bytes), and Kafka
headers and Pub/Sub attributes are valid UTF-8 within their size limits.
"""

from __future__ import annotations

import base64
import decimal
import json
import math

import apache_beam as beam
from apache_beam.transforms.window import GlobalWindow
from apache_beam.utils.windowed_value import WindowedValue

from archive.gate import DELIVER
from pipeline.kafka import (
    CommitKafkaOffsets, KafkaTopicSink, ReadFromKafkaTopic, ReadFromKafkaXlang, finished_spans)
from pipeline.options import new_run_id
from pipeline.pubsub import PubSubTopicSink, ReadFromPubSubSubscription
from pipeline.sinks import FolderSink, strict_json, strict_text
from transforms.archive import ArchiveMessages
from transforms.index import WriteAuditIndex
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
        if outcome.byte_offset is not None:  # cost mode: the message's frame in its batch object
            record["archive_byte_offset"], record["archive_bytes"] = outcome.byte_offset, outcome.bytes
        if outcome.eml_url:
            record["archive_eml_url"] = outcome.eml_url
    if message.attributes:
        record["attributes"] = message.attributes
    embedded = faithful_json(message.data)
    if embedded is not _NOT_FAITHFUL:
        record["message"] = embedded
    else:
        record["message_base64"] = base64.b64encode(message.data).decode("ascii")
    return record


_NOT_FAITHFUL = object()


class _Unfaithful(ValueError):
    pass


def faithful_json(data: bytes):
    """The JSON value of `data` when writing it back as strict JSON keeps everything it
    says, else _NOT_FAITHFUL: not UTF-8, not JSON, NaN or Infinity, a lone surrogate, a
    duplicate key (one value would be lost), a number a double cannot hold exactly."""
    try:
        value = json.loads(data.decode("utf-8"), object_pairs_hook=_unique_keys,
                           parse_float=_exact_float, parse_constant=_no_constant)
        json.dumps(value, ensure_ascii=False, allow_nan=False).encode("utf-8")
    except (ValueError, UnicodeError, RecursionError):  # _Unfaithful and JSONDecodeError are ValueErrors
        return _NOT_FAITHFUL
    return value


def _unique_keys(pairs):
    record = dict(pairs)
    if len(record) != len(pairs):
        raise _Unfaithful("duplicate key")
    return record


def _exact_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value) or decimal.Decimal(text) != decimal.Decimal(repr(value)):
        raise _Unfaithful("a number a double does not hold")
    return value


def _no_constant(name: str):
    raise _Unfaithful(f"{name} is not JSON")


_HEADER_BYTES = 512   # a reason is cut to this many bytes (whole characters) in a header
_ATTRIBUTE_BYTES = 1024  # Pub/Sub's limit on an attribute value


def _utf8(text: str, limit: int | None = None) -> bytes:
    """`text` as UTF-8 (lone surrogates spelled as escapes), cut at `limit` bytes on a
    character boundary."""
    data = strict_text(text).encode("utf-8")
    if limit is not None and len(data) > limit:
        data = data[:limit].decode("utf-8", "ignore").encode("utf-8")
    return data


def _delivery_message(released: Released) -> tuple[bytes, bytes, list]:
    """(key, value, headers) on a Kafka topic: the message as sent to us, keyed by its id."""
    message = released.message
    headers = [("message_id", _utf8(message.message_id or "", _ATTRIBUTE_BYTES)),
               ("archive_status", _utf8(released.outcome.status if released.outcome else "NONE")),
               ("reason", _utf8(released.decision.reason, _HEADER_BYTES))]
    outcome = released.outcome
    if outcome is not None and outcome.url:
        headers.append(("archive_url", _utf8(outcome.url, _ATTRIBUTE_BYTES)))
        if outcome.byte_offset is not None:  # cost mode: the message's frame in its batch object
            headers += [("archive_byte_offset", str(outcome.byte_offset).encode()),
                        ("archive_bytes", str(outcome.bytes).encode())]
    return _utf8(message.message_id or message.key), message.data, headers


def _pubsub_attributes(released: Released) -> dict[str, str]:
    """The message's own attributes and our headers, as Pub/Sub accepts them."""
    attributes = {strict_text(str(k)): strict_text(str(v))
                  for k, v in (released.message.attributes or {}).items()}
    attributes.update({k: v.decode("utf-8") for k, v in _delivery_message(released)[2]})
    return attributes


def _sink(url: str, name: str, bootstrap_servers: str, run_id: str | None = None):
    if url.startswith("kafka://"):
        return KafkaTopicSink(bootstrap_servers, url[len("kafka://"):])
    if url.startswith("pubsub://"):
        return PubSubTopicSink(url[len("pubsub://"):])
    return FolderSink(url, name, run_id)


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
        sink.add(data, _pubsub_attributes(released))


def _publish_outcome(sink, outcome) -> None:
    """An outcome as JSON: a Kafka message keyed by message id, a Pub/Sub message
    with the id as attribute, or a JSON line."""
    if isinstance(sink, FolderSink):
        sink.add_record(outcome.to_dict())
    elif isinstance(sink, KafkaTopicSink):
        sink.add(_utf8(outcome.message_id or ""), strict_json(outcome.to_dict()).encode("utf-8"))
    else:
        sink.add(strict_json(outcome.to_dict()).encode("utf-8"),
                 {"message_id": _utf8(outcome.message_id or "", _ATTRIBUTE_BYTES).decode("utf-8")})


class _PublishDecisionsFn(beam.DoFn):
    """Publishes each verdict and its outcome together; once every sink has flushed
    the bundle, the bundle's source positions count as done (and may be committed).

    One DoFn for the three outputs, so a record's position is released only when
    its outcome and its delivery (or failure) record are both durable.
    """

    def __init__(self, outcomes: str, deliveries: str, failures: str, bootstrap_servers: str,
                 run_id: str | None = None):
        self._urls = (outcomes, deliveries, failures)
        self._bootstrap_servers = bootstrap_servers
        self._run_id = run_id

    def setup(self):
        self._outcomes, self._deliveries, self._failures = (
            _sink(url, name, self._bootstrap_servers, self._run_id)
            for url, name in zip(self._urls, ("outcomes", "deliveries", "failures")))

    def teardown(self):
        for sink in (getattr(self, name, None) for name in ("_outcomes", "_deliveries", "_failures")):
            close = getattr(sink, "close", None)
            if close is not None:
                close()

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
    tenants = tenants if tenants is not None else options.tenant_directory()
    archived = records | "Archive" >> ArchiveMessages(
        options.store_spec(), options.archiver_config(), tenants, emit_messages=True, index=options.audit_index)
    if options.audit_index:  # a file per tenant, channel and day at least every flush_seconds
        archived.index_rows | "WriteAuditIndex" >> WriteAuditIndex(
            options.store_spec(), tenants, getattr(options, "run_id", None) or new_run_id(),
            flush_seconds=options.audit_index_flush_seconds, manifest_seconds=options.audit_manifest_seconds,
            streaming=True)
    # Each message reaches the gate with its own outcome: nothing to wait for.
    gated = archived.messages | "Gate" >> GateDelivery(options.gate_policy)
    done = (
        gated["decided"]
        | "Publish" >> beam.ParDo(_PublishDecisionsFn(
            options.outcomes, options.deliveries, options.failures, options.kafka_bootstrap_servers,
            getattr(options, "run_id", None) or new_run_id())))
    if options.kafka_topic and options.kafka_reader == "python":
        done | "CommitOffsets" >> CommitKafkaOffsets(options.kafka_bootstrap_servers, options.kafka_group)
    return gated
