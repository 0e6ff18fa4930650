"""The archive's Beam metrics: one namespace, one counter per channel and outcome status."""

from apache_beam.metrics import Metrics

METRICS_NAMESPACE = "archive"


def outcome_counter(channel: str | None, status: str):
    return Metrics.counter(METRICS_NAMESPACE, f"{channel or 'unknown'}.{status}")
