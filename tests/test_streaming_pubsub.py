"""The streaming job from Pub/Sub: Google's pstest server in, moto (S3) as the store,
the DirectRunner's streaming mode as the runner, a Pub/Sub topic as the delivery output."""

import json
import os
import subprocess
import sys
import time
import uuid

import pytest

from devservers import pubsub
from devservers.faultproxy import FaultProxy
from tests.test_pipeline import BAD_LINES
from tests.test_streaming import ROOT, _kill_group, messages

PROJECT = "archiver-local"  # Beam checks project ids: 6 to 30 characters


@pytest.fixture(scope="module")
def emulator():
    with pubsub.start() as server:
        yield server


def lines(folder):
    found = []
    for name in sorted(os.listdir(folder)) if os.path.isdir(folder) else []:
        if name.endswith(".jsonl"):
            with open(os.path.join(folder, name), encoding="utf-8") as handle:
                found += [json.loads(line) for line in handle]
    return found


def test_pubsub_stream_keeps_attributes_and_ids_and_delivers_only_the_archived(emulator, s3_server, tmp_path):
    name = f"outbound-{uuid.uuid4().hex[:8]}"
    topic = emulator.create_topic(PROJECT, name)
    subscription = emulator.create_subscription(PROJECT, name, name + "-archiver")
    delivery_topic = emulator.create_topic(PROJECT, name + "-deliveries")
    delivery_sub = emulator.create_subscription(PROJECT, name + "-deliveries", name + "-delivery-reader")
    bucket = s3_server.create_bucket(f"pubsub-{uuid.uuid4().hex[:8]}")
    values = messages(40, "ps") + BAD_LINES[:2]
    publisher = emulator.publisher()
    published = [publisher.publish(topic, v, campaign_kind="promo").result(30) for v in values]

    with FaultProxy(s3_server.endpoint_url) as proxy:
        proxy.s3_error(400, "InvalidRequest", "refused by the test", None, method="PUT", path=r"/Sms/")
        argv = [sys.executable, "-m", "pipeline.run", "--pubsub_subscription", subscription,
                "--destination", f"s3://{bucket}",
                "--storage_options", json.dumps(s3_server.storage_options(proxy.url)),
                "--deliveries", f"pubsub://{delivery_topic}",
                "--failures", str(tmp_path / "failures"), "--outcomes", str(tmp_path / "outcomes"),
                "--retry_base_delay", "0.01", "--retry_max_delay", "0.05"]
        log = open(os.path.join(ROOT, ".cache", f"streaming-{name}.log"), "ab")
        job = subprocess.Popen(argv, cwd=ROOT, env={**os.environ, **emulator.env()}, stdout=log,
                               stderr=subprocess.STDOUT, start_new_session=True)
        try:
            deadline = time.monotonic() + 180
            while time.monotonic() < deadline and len(lines(tmp_path / "outcomes")) < len(values):
                assert job.poll() is None, "the streaming job exited"
                time.sleep(0.5)
            outcomes = lines(tmp_path / "outcomes")
            assert len(outcomes) == len(values), f"{len(outcomes)} of {len(values)} outcomes"
            archived = {o["message_id"] for o in outcomes if o["status"] == "ARCHIVED"}
            deliveries = {}
            subscriber = emulator.subscriber()
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and len(deliveries) < len(archived):
                response = subscriber.pull(subscription=delivery_sub, max_messages=100, timeout=10)
                for received in response.received_messages:
                    deliveries[received.message.attributes["message_id"]] = received.message
                if response.received_messages:
                    subscriber.acknowledge(subscription=delivery_sub,
                                           ack_ids=[r.ack_id for r in response.received_messages])
        finally:
            job.terminate()
            try:
                job.wait(30)
            finally:
                _kill_group(job.pid)
    failed = {o["message_id"] for o in outcomes if o["status"] == "FAILED"}
    assert failed and all(o["channel"] == "sms" for o in outcomes if o["status"] == "FAILED")
    assert set(deliveries) == archived                      # strict: only the archived
    for message_id, message in deliveries.items():
        assert message.attributes["archive_status"] == "ARCHIVED"
        assert message.attributes["campaign_kind"] == "promo"            # the input's attributes
        assert message.attributes["pubsub_message_id"] in published      # and its Pub/Sub id
        assert json.loads(message.data)["message_id"] == message_id
    held = lines(tmp_path / "failures")
    assert sorted(r["archive_status"] for r in held) == sorted(["FAILED"] * len(failed) + ["INVALID"] * 2)
    assert all(r["attributes"]["campaign_kind"] == "promo" for r in held)
