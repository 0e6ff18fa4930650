"""Pub/Sub in and out.

In: Beam's own ReadFromPubSub, with attributes and the Pub/Sub message id kept
on each record. Locally it runs on the DirectRunner's streaming mode, which
implements that read natively (and acks what it has read once the read bundle
is committed; on Dataflow the service acks after durable processing).
Out: a publisher whose flush waits for every publish to be acknowledged.
The google-cloud-pubsub client honours PUBSUB_EMULATOR_HOST for the emulator.
"""

from __future__ import annotations

import apache_beam as beam

from transforms.archive import SourcedRecord


class ReadFromPubSubSubscription(beam.PTransform):
    def __init__(self, subscription: str):
        super().__init__()
        self._subscription = subscription

    def expand(self, pbegin):
        from apache_beam.io.gcp.pubsub import ReadFromPubSub

        subscription = self._subscription
        return (pbegin
                | "Read" >> ReadFromPubSub(subscription=subscription, with_attributes=True)
                | "Record" >> beam.Map(lambda message: SourcedRecord(
                    message.data, f"pubsub://{subscription}#{message.message_id}",
                    attributes={**(message.attributes or {}), "pubsub_message_id": message.message_id or ""})))


class PubSubTopicSink:
    """Publishes to one topic; `flush` returns once every message is acknowledged."""

    def __init__(self, topic: str):
        self.topic = topic
        self._publisher = None
        self._futures: list = []

    def add(self, data: bytes, attributes: dict[str, str] | None = None) -> None:
        if self._publisher is None:
            from google.cloud import pubsub_v1
            self._publisher = pubsub_v1.PublisherClient()
        self._futures.append(self._publisher.publish(self.topic, data, **(attributes or {})))

    def flush(self) -> None:
        futures, self._futures = self._futures, []
        for future in futures:
            future.result(timeout=60)
