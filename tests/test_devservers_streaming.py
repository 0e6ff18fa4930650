"""The streaming dev servers speak the real protocols: a Kafka broker (KRaft) with
confluent-kafka, Google's Pub/Sub fake with google-cloud-pubsub, toxiproxy with
plain sockets and HTTP.

A server that cannot be installed or started errors its fixture: the tests fail,
they never skip.
"""

import http.client
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from devservers import kafka, pubsub, toxiproxy

N_MESSAGES = 200


@pytest.fixture(scope="module")
def broker():
    server = kafka.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def emulator():
    server = pubsub.start()
    try:
        yield server
    finally:
        server.stop()




def _produce(bootstrap: str, topic: str, count: int, start: int = 0) -> list[tuple[int, int]]:
    """Keyed messages with headers; returns (partition, offset) per message in order."""
    delivered: dict[int, tuple[int, int]] = {}
    errors = []

    def on_delivery(err, msg):
        if err is not None:
            errors.append(err)
        else:
            delivered[json.loads(msg.value())["seq"]] = (msg.partition(), msg.offset())

    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True})
    for i in range(start, start + count):
        producer.produce(topic, key=f"user-{i % 10}".encode(),
                         value=json.dumps({"seq": i, "body": f"message {i}"}).encode(),
                         headers=[("channel", b"email"), ("seq", str(i).encode())],
                         on_delivery=on_delivery)
    assert producer.flush(30) == 0, "messages still in flight after 30 s"
    assert not errors, errors
    return [delivered[i] for i in range(start, start + count)]


def _consumer(bootstrap: str, group: str) -> Consumer:
    return Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                     "auto.offset.reset": "earliest", "enable.auto.commit": False})


def _consume(consumer: Consumer, count: int, timeout: float = 30.0) -> list:
    messages = []
    deadline = time.monotonic() + timeout
    while len(messages) < count and time.monotonic() < deadline:
        msg = consumer.poll(0.5)
        if msg is None:
            continue
        assert msg.error() is None, msg.error()
        messages.append(msg)
    assert len(messages) == count, f"consumed {len(messages)} of {count} in {timeout}s"
    return messages


def test_kafka_keys_headers_and_group_commit(broker):
    topic = broker.create_topic("outbound-messages", partitions=4)
    placed = _produce(broker.bootstrap_servers, topic, N_MESSAGES)

    consumer = _consumer(broker.bootstrap_servers, "archiver")
    try:
        consumer.subscribe([topic])
        messages = _consume(consumer, N_MESSAGES)
        consumer.commit(asynchronous=False)
        partitions = [TopicPartition(topic, p) for p in range(4)]
        committed = {tp.partition: tp.offset for tp in consumer.committed(partitions, timeout=10)}
    finally:
        consumer.close()

    seen = {}
    for msg in messages:
        headers = dict(msg.headers())
        seq = int(headers["seq"])
        assert headers["channel"] == b"email"
        assert msg.key() == f"user-{seq % 10}".encode()
        assert json.loads(msg.value()) == {"seq": seq, "body": f"message {seq}"}
        assert (msg.partition(), msg.offset()) == placed[seq]
        seen[seq] = msg
    assert sorted(seen) == list(range(N_MESSAGES))
    # One key, one partition, in order: what per-profile ordering relies on.
    for key in range(10):
        same_key = [seen[s] for s in range(key, N_MESSAGES, 10)]
        assert len({m.partition() for m in same_key}) == 1
        assert [m.offset() for m in same_key] == sorted(m.offset() for m in same_key)
    assert len({partition for partition, _ in placed}) > 1, "the default partitioner used one partition"

    # The group's committed position is the end of every partition.
    ends = {}
    for partition, offset in placed:
        ends[partition] = max(ends.get(partition, 0), offset + 1)
    assert {p: committed[p] for p in ends} == ends


def test_kafka_restart_keeps_data_and_committed_offsets(broker):
    topic = broker.create_topic("restart-check", partitions=1)
    _produce(broker.bootstrap_servers, topic, 50)
    consumer = _consumer(broker.bootstrap_servers, "restart-group")
    try:
        consumer.subscribe([topic])
        _consume(consumer, 50)
        # Only the first 30 are "done": the next run of the group must resume at 30.
        consumer.commit(offsets=[TopicPartition(topic, 0, 30)], asynchronous=False)
    finally:
        consumer.close()

    port = broker.port
    broker.restart()
    assert broker.port == port

    consumer = _consumer(broker.bootstrap_servers, "restart-group")
    try:
        [position] = consumer.committed([TopicPartition(topic, 0)], timeout=30)
        assert position.offset == 30
        consumer.subscribe([topic])
        resumed = _consume(consumer, 20)
    finally:
        consumer.close()
    assert [int(dict(m.headers())["seq"]) for m in resumed] == list(range(30, 50))

    # The log itself survived: a reader without a group sees all 50, and more can be written.
    _produce(broker.bootstrap_servers, topic, 5, start=50)
    reader = _consumer(broker.bootstrap_servers, "restart-reader")
    try:
        reader.assign([TopicPartition(topic, 0, 0)])
        everything = _consume(reader, 55)
    finally:
        reader.close()
    assert [int(dict(m.headers())["seq"]) for m in everything] == list(range(55))


def test_pubsub_publish_attributes_pull_ack_and_redelivery(emulator):
    topic = emulator.create_topic("archiver-test", "outbound")
    subscription = emulator.create_subscription("archiver-test", "outbound", "archiver")
    assert emulator.env() == {"PUBSUB_EMULATOR_HOST": emulator.emulator_host}

    publisher = emulator.publisher()
    futures = [publisher.publish(topic, json.dumps({"seq": i}).encode(), channel="sms", seq=str(i))
               for i in range(20)]
    message_ids = [future.result(timeout=30) for future in futures]
    assert len(set(message_ids)) == 20

    subscriber = emulator.subscriber()
    try:
        received = []
        deadline = time.monotonic() + 30
        while len(received) < 20 and time.monotonic() < deadline:
            response = subscriber.pull(subscription=subscription, max_messages=20, timeout=10)
            received.extend(response.received_messages)
        assert len(received) == 20
        by_seq = {int(r.message.attributes["seq"]): r for r in received}
        assert sorted(by_seq) == list(range(20))
        for seq, r in by_seq.items():
            assert dict(r.message.attributes) == {"channel": "sms", "seq": str(seq)}
            assert json.loads(r.message.data) == {"seq": seq}
            assert r.message.message_id in message_ids

        # Ack all but one; nack that one (deadline 0): it alone comes back.
        subscriber.acknowledge(subscription=subscription,
                               ack_ids=[r.ack_id for seq, r in by_seq.items() if seq != 7])
        subscriber.modify_ack_deadline(subscription=subscription, ack_ids=[by_seq[7].ack_id],
                                       ack_deadline_seconds=0)
        again = []
        deadline = time.monotonic() + 30
        while not again and time.monotonic() < deadline:
            again = list(subscriber.pull(subscription=subscription, max_messages=20, timeout=10)
                         .received_messages)
        assert [r.message.attributes["seq"] for r in again] == ["7"]
        subscriber.acknowledge(subscription=subscription, ack_ids=[again[0].ack_id])
        # Everything is acked: the fake waits its 0.5 s and answers with nothing.
        assert not subscriber.pull(subscription=subscription, max_messages=20, timeout=10).received_messages
    finally:
        subscriber.close()
        publisher.transport.close()


def test_pubsub_streaming_pull(emulator):
    topic = emulator.create_topic("archiver-test", "streamed")
    subscription = emulator.create_subscription("archiver-test", "streamed", "streamer")
    publisher = emulator.publisher()
    subscriber = emulator.subscriber()
    got, done = [], threading.Event()

    def callback(message):
        got.append((message.data, dict(message.attributes)))
        message.ack()
        if len(got) == 10:
            done.set()

    future = subscriber.subscribe(subscription, callback)
    try:
        for i in range(10):
            publisher.publish(topic, f"m{i}".encode(), seq=str(i)).result(timeout=30)
        assert done.wait(30), f"streaming pull delivered {len(got)} of 10"
    finally:
        future.cancel()
        future.result(timeout=30)
        subscriber.close()
        publisher.transport.close()
    assert sorted(got) == sorted((f"m{i}".encode(), {"seq": str(i)}) for i in range(10))


class _Hello(BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"hello"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def http_upstream():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hello)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def _timed_get(host: str, port: int) -> float:
    """Seconds for one GET on a new connection, as an SDK without a pool would do."""
    started = time.perf_counter()
    conn = http.client.HTTPConnection(host, port, timeout=10)
    try:
        conn.request("GET", "/object")
        response = conn.getresponse()
        assert response.status == 200 and response.read() == b"hello"
    finally:
        conn.close()
    return time.perf_counter() - started


def test_toxiproxy_latency_is_a_lower_bound_on_round_trips(toxi, http_upstream):
    assert toxi.version()
    proxy = toxi.create_proxy("http-upstream", upstream=f"127.0.0.1:{http_upstream}")
    assert proxy.host == "127.0.0.1" and proxy.port > 0
    try:
        assert _timed_get(proxy.host, proxy.port) >= 0  # reachable through the proxy

        proxy.add_latency(40, stream="downstream")
        assert [t["name"] for t in proxy.toxics()] == ["latency_downstream"]
        assert min(_timed_get(proxy.host, proxy.port) for _ in range(3)) >= 0.040

        proxy.add_latency(25, stream="upstream")
        assert min(_timed_get(proxy.host, proxy.port) for _ in range(3)) >= 0.065

        proxy.remove_toxics()
        assert proxy.toxics() == []
        _timed_get(proxy.host, proxy.port)
    finally:
        proxy.delete()
    with pytest.raises(OSError):
        _timed_get(proxy.host, proxy.port)
