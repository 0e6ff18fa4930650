"""Shared fixtures. Pipelines run on the FnApiRunner that the DirectRunner would
fall back to, without the DirectRunner's attempt to download Prism first."""

import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from pipeline.run import FNAPI_RUNNER  # noqa: E402


@pytest.fixture
def test_pipeline():
    from apache_beam.testing.test_pipeline import TestPipeline

    def make():
        return TestPipeline(runner=FNAPI_RUNNER)
    return make
