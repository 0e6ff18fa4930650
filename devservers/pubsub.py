"""Google's Pub/Sub fake (``pstest`` from cloud.google.com/go/pubsub/v2) as a real gRPC server.

The Go source is ``devservers/pstest/``; ``install()`` builds it once into
``<cache>/bin/pstest-server`` (rebuilt when that source changes). Point any
client at it the way the emulator is meant to be used:

    with pubsub.start() as emulator:
        emulator.create_topic("proj", "outbound")
        os.environ.update(emulator.env())   # PUBSUB_EMULATOR_HOST for Beam/clients

It keeps everything in memory: a stopped server loses its topics.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
from pathlib import Path

from devservers._process import (
    CACHE_ROOT, HOST, DevServerError, RunningServer, ServerProcess, install_lock, run_logged,
    wait_ready)

_SOURCE = Path(__file__).resolve().parent / "pstest"
_BINARY = CACHE_ROOT / "bin" / "pstest-server"
_READY = re.compile(rb"^listening on (\S+)$", re.M)


def install() -> Path:
    """Build the fake with ``go build``; skipped while its source is unchanged.

    The first build fetches modules through the Go module proxy (go.sum is committed).
    """
    stamp = _BINARY.with_suffix(".source-sha256")
    digest = _source_digest()
    if _BINARY.exists() and stamp.exists() and stamp.read_text().strip() == digest:
        return _BINARY
    if shutil.which("go") is None:
        raise DevServerError("building the Pub/Sub fake needs `go` on PATH")
    with install_lock("pstest"):
        if _BINARY.exists() and stamp.exists() and stamp.read_text().strip() == digest:
            return _BINARY
        _BINARY.parent.mkdir(parents=True, exist_ok=True)
        partial = _BINARY.with_name(f"{_BINARY.name}.partial")
        env = {**os.environ, "GOFLAGS": "-mod=mod", "CGO_ENABLED": "0"}
        run_logged("pstest-install", ["go", "build", "-trimpath", "-o", str(partial), "."],
                   cwd=_SOURCE, env=env)
        os.replace(partial, _BINARY)
        stamp.write_text(digest + "\n")
    return _BINARY


class PubSubEmulator(RunningServer):
    """A running pstest server on 127.0.0.1."""

    def __init__(self, process: ServerProcess, emulator_host: str):
        self.process = process
        self.emulator_host = emulator_host

    def __repr__(self) -> str:
        return f"PubSubEmulator(emulator_host={self.emulator_host!r})"

    def env(self) -> dict[str, str]:
        """What Google's clients and Beam's ReadFromPubSub read to find an emulator."""
        return {"PUBSUB_EMULATOR_HOST": self.emulator_host}

    def publisher(self, **kwargs):
        """A ``pubsub_v1.PublisherClient`` bound to this server, whatever the environment says."""
        from google.cloud import pubsub_v1
        from google.pubsub_v1.services.publisher.transports import PublisherGrpcTransport

        return pubsub_v1.PublisherClient(transport=PublisherGrpcTransport(channel=self._channel()), **kwargs)

    def subscriber(self, **kwargs):
        """A ``pubsub_v1.SubscriberClient`` bound to this server."""
        from google.cloud import pubsub_v1
        from google.pubsub_v1.services.subscriber.transports import SubscriberGrpcTransport

        return pubsub_v1.SubscriberClient(transport=SubscriberGrpcTransport(channel=self._channel()), **kwargs)

    def create_topic(self, project: str, topic: str) -> str:
        """Create ``projects/<project>/topics/<topic>``; return its path."""
        publisher = self.publisher()
        try:
            path = publisher.topic_path(project, topic)
            publisher.create_topic(name=path)
            return path
        finally:
            publisher.transport.close()

    def create_subscription(self, project: str, topic: str, subscription: str,
                            ack_deadline_seconds: int = 60) -> str:
        """Create ``projects/<project>/subscriptions/<subscription>`` on the topic; return its path."""
        subscriber = self.subscriber()
        try:
            path = subscriber.subscription_path(project, subscription)
            subscriber.create_subscription(name=path, topic=f"projects/{project}/topics/{topic}",
                                           ack_deadline_seconds=ack_deadline_seconds)
            return path
        finally:
            subscriber.close()

    def _channel(self):
        import grpc

        return grpc.insecure_channel(self.emulator_host)


def start(timeout: float = 60.0) -> PubSubEmulator:
    """Build if needed, then start a fake on a port the kernel picks."""
    binary = install()
    # Port 0, and the address read back from the server: no free-port race.
    process = ServerProcess("pstest", [str(binary), "-host", HOST, "-port", "0"])

    def reported() -> bool:
        return _READY.search(process.log_path.read_bytes()) is not None

    wait_ready(process, reported, timeout=timeout, target="its 'listening on' line")
    address = _READY.search(process.log_path.read_bytes()).group(1).decode()
    return PubSubEmulator(process, address)


def _source_digest() -> str:
    h = hashlib.sha256()
    for name in ("main.go", "go.mod", "go.sum"):
        path = _SOURCE / name
        h.update(name.encode() + b"\0" + (path.read_bytes() if path.exists() else b"") + b"\0")
    return h.hexdigest()
