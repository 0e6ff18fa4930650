"""The versions that go together (devservers/versions.py) are the ones installed."""

import re
from pathlib import Path

import apache_beam

from devservers import flink, prism, versions

ROOT = Path(__file__).resolve().parent.parent


def test_the_sdk_is_the_one_named_and_pinned():
    assert apache_beam.__version__ == versions.BEAM_PYTHON_SDK
    pins = re.findall(r'"apache-beam(?:\[[a-z,]+\])?==([0-9.]+)"', (ROOT / "setup.py").read_text())
    assert pins and set(pins) == {versions.BEAM_PYTHON_SDK}


def test_the_flink_job_server_and_cluster_jars_are_the_ones_named():
    flink.install()
    names = {p.name for p in flink.LIBS.iterdir()}
    assert f"beam-runners-flink-{versions.FLINK_MINOR}-{versions.FLINK_JOB_SERVER_BEAM}.jar" in names
    assert f"flink-runtime-{versions.FLINK}.jar" in names
    assert f"flink-runtime-web-{versions.FLINK}.jar" in names
    assert versions.FLINK.startswith(versions.FLINK_MINOR + ".")
    beam_jars = {n for n in names if n.startswith("beam-runners-") or n.startswith("beam-sdks-java-core")}
    assert all(versions.FLINK_JOB_SERVER_BEAM in n for n in beam_jars), beam_jars
    flink_jars = {n for n in names if re.fullmatch(r"flink-(runtime|core|streaming-java|clients)-[0-9.]+\.jar", n)}
    assert flink_jars and all(versions.FLINK in n for n in flink_jars), flink_jars


def test_the_go_binaries_are_built_at_the_sdk_version():
    flink.install()
    stamp = flink.BOOT.with_name(flink.BOOT.name + ".version").read_text().strip()
    assert stamp == "v" + versions.BEAM_PYTHON_SDK
    prism_stamp = prism.BINARY.with_name(prism.BINARY.name + ".version").read_text().strip()
    assert prism_stamp == "v" + versions.BEAM_PYTHON_SDK
