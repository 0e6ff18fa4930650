"""The load generator publishes at the asked rate to a real broker."""

import json

from confluent_kafka import Consumer

from bench import loadgen
from tests.test_streaming import broker  # noqa: F401  the module's Kafka broker fixture


def test_loadgen_publishes_count_messages_to_kafka_with_fresh_send_times(broker):  # noqa: F811
    broker.create_topic("loadgen", partitions=2)
    assert loadgen.main(["--kafka", broker.bootstrap_servers, "--topic", "loadgen", "--rate", "500",
                         "--count", "200", "--bad-ratio", "0"]) == 0
    consumer = Consumer({"bootstrap.servers": broker.bootstrap_servers, "group.id": "loadgen-check",
                         "auto.offset.reset": "earliest"})
    consumer.subscribe(["loadgen"])
    values = []
    while len(values) < 200:
        batch = consumer.consume(200, 10)
        assert batch, f"only {len(values)} of 200 arrived"
        values += [m.value() for m in batch if m.error() is None]
    consumer.close()
    records = [json.loads(v) for v in values]
    assert {r["channel"].lower() for r in records} >= {"email", "push", "sms", "whatsapp"}
    assert max(r["sent_at"] for r in records) - min(r["sent_at"] for r in records) >= 300  # paced, ~400 ms


def test_paced_keeps_the_rate_without_sleeping_per_message():
    sent = []
    count, elapsed = loadgen.paced(sent.append, (b"x" for _ in range(1000)), rate=2000, seconds=None, count=100)
    assert count == 100 == len(sent)
    assert elapsed >= 99 / 2000
