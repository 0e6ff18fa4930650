"""Beam's Java expansion service with KafkaIO, for the cross-language ReadFromKafka.

Maven Central here serves neither Beam Java 2.77 nor the prebuilt
beam-sdks-java-io-expansion-service jar of any version, so the service is
assembled from beam-sdks-java-expansion-service and beam-sdks-java-io-kafka at
the newest version whose dependencies resolve (2.73.0), without the Confluent
Schema Registry serializers (not served; only needed for Avro with a registry).
It expands `ReadFromKafka` into KafkaIO's transforms, which run in a Java SDK
harness on Flink or Dataflow.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

from devservers import versions
from devservers._process import (
    CACHE_ROOT, HOST, DevServerError, RunningServer, ServerProcess, install_lock, launch,
    maven_copy_dependencies, tcp_probe)

BEAM_JAVA_VERSION = versions.BEAM_JAVA_EXPANSION
_POM = """<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>local.devservers</groupId>
  <artifactId>beam-kafka-expansion</artifactId>
  <version>{version}</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.beam</groupId>
      <artifactId>beam-sdks-java-expansion-service</artifactId>
      <version>{version}</version>
    </dependency>
    <dependency>
      <groupId>org.apache.beam</groupId>
      <artifactId>beam-sdks-java-io-kafka</artifactId>
      <version>{version}</version>
      <exclusions>
        <exclusion><groupId>io.confluent</groupId><artifactId>*</artifactId></exclusion>
      </exclusions>
    </dependency>
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>kafka-clients</artifactId>
      <version>3.9.1</version>
    </dependency>
  </dependencies>
</project>
"""


@dataclass
class ExpansionService(RunningServer):
    address: str
    process: ServerProcess = field(repr=False)


def install(version: str = BEAM_JAVA_VERSION) -> Path:
    """Fetch the expansion service's jars with Maven, once; return the libs folder."""
    home = CACHE_ROOT / f"beam-expansion-{version}"
    libs = home / "libs"
    if (home / ".installed").exists():
        return libs
    for tool in ("java", "mvn"):
        if shutil.which(tool) is None:
            raise DevServerError(f"the Beam expansion service needs `{tool}` on PATH")
    with install_lock(f"beam-expansion-{version}"):
        if (home / ".installed").exists():
            return libs
        home.mkdir(parents=True, exist_ok=True)
        _, staging = maven_copy_dependencies("beam-expansion-install", home, _POM.format(version=version))
        shutil.rmtree(libs, ignore_errors=True)
        staging.rename(libs)
        (home / ".installed").write_text(version + "\n")
    return libs


def start(timeout: float = 90.0) -> ExpansionService:
    libs = install()
    process, port = launch(
        "beam-expansion",
        lambda port: ["java", "-Xmx512m", "-cp", f"{libs}/*",
                      "org.apache.beam.sdk.expansion.service.ExpansionService", str(port)],
        probe_for_port=lambda port: tcp_probe(HOST, port), timeout=timeout)
    return ExpansionService(address=f"{HOST}:{port}", process=process)
