"""The cross-language reader: Beam's Java KafkaIO expands into our pipeline through a
real expansion service (Java, started here); running it needs Flink or Dataflow."""

import pytest
from apache_beam.options.pipeline_options import PipelineOptions
import apache_beam as beam

from devservers import expansion
from pipeline.options import ArchiveOptions
from pipeline.streaming import build_streaming


@pytest.fixture(scope="module")
def expansion_service():
    with expansion.start() as service:
        yield service


def test_xlang_reader_expands_into_the_streaming_pipeline(expansion_service, tmp_path):
    options = PipelineOptions([
        "--streaming", "--kafka_topic", "outbound", "--kafka_reader", "xlang",
        "--expansion_service", expansion_service.address, "--destination", str(tmp_path / "archive"),
        "--deliveries", str(tmp_path / "d"), "--failures", str(tmp_path / "f"), "--outcomes", str(tmp_path / "o")])
    pipeline = beam.Pipeline(options=options)
    build_streaming(pipeline, options.view_as(ArchiveOptions))
    proto = pipeline.to_runner_api()
    names = [t.unique_name for t in proto.components.transforms.values()]
    # KafkaIO's own Java transforms feed our Python archive and gate
    assert "ReadKafka/KafkaIO/KafkaIO.Read" in names
    assert any("KafkaCommitOffset" in n for n in names)     # KafkaIO commits its offsets on finalize
    assert any(n.startswith("Archive/") for n in names) and any(n.startswith("Gate/") for n in names)
    assert not any(n.startswith("CommitOffsets") for n in names)
    java = [e.payload for e in proto.components.environments.values() if e.urn == "beam:env:docker:v1"]
    assert any(b"beam_java" in payload for payload in java)  # run by a Java SDK harness


def test_xlang_reader_needs_an_expansion_service(tmp_path):
    options = PipelineOptions(["--streaming", "--kafka_topic", "outbound", "--kafka_reader", "xlang"])
    with pytest.raises(ValueError, match="--expansion_service"):
        build_streaming(beam.Pipeline(options=options), options.view_as(ArchiveOptions))
