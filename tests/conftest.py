"""Shared fixtures. Pipelines run on the FnApiRunner that the DirectRunner would
fall back to, without the DirectRunner's attempt to download Prism first."""

import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

# Before anything imports gcsfs: devservers.gcs turns off gcsfs' gRPC bucket-layout
# lookup, which fake-gcs-server cannot answer.
from devservers import azurite, gcs, s3, toxiproxy  # noqa: E402
from pipeline.run import FNAPI_RUNNER  # noqa: E402


@pytest.fixture
def test_pipeline():
    from apache_beam.testing.test_pipeline import TestPipeline

    def make():
        return TestPipeline(runner=FNAPI_RUNNER)
    return make


# --- real servers on 127.0.0.1, one of each per test session -------------------------
# A server that cannot start errors its fixture: the tests that need it fail, never skip.

@pytest.fixture(scope="session")
def s3_server():
    with s3.start() as server:
        yield server


@pytest.fixture(scope="session")
def s3_auth_server():
    """moto with IAM credential checking on: a wrong key or secret gets 403."""
    with s3.start(auth=True) as server:
        yield server


@pytest.fixture(scope="session")
def azurite_server():
    with azurite.start() as server:
        yield server


@pytest.fixture(scope="session")
def gcs_server():
    with gcs.start() as server:
        yield server


@pytest.fixture(scope="session")
def toxi():
    """Toxiproxy: TCP-level faults (latency, resets, half-open, refused) in front of a server."""
    server = toxiproxy.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def flink_cluster():
    """A Flink session cluster: a JobManager and two TaskManagers (2 slots each), own JVMs."""
    from devservers import flink

    with flink.start(task_managers=2, slots=2) as cluster:
        yield cluster
