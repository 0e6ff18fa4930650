"""A real Apache Kafka broker (KRaft, one combined broker+controller node) on 127.0.0.1.

Kafka's own jars come from Maven Central (``install``) into
``<cache>/kafka-<version>/libs`` and run on the machine's ``java`` (17+): no
tarball, no Docker. ``start()`` gives a fresh, formatted broker on free ports:

    with kafka.start() as broker:
        broker.create_topic("outbound", partitions=4)
        Producer({"bootstrap.servers": broker.bootstrap_servers})

Warm starts stay short (about 2.5 s) thanks to two things clients never see:
a class-data-sharing archive of the broker's classes, dumped by the first
broker that stops cleanly, and storage formatted once per version by Kafka's
StorageTool, copied per broker with a new random cluster id.
"""

from __future__ import annotations

import atexit
import base64
import os
import shutil
import signal
import tempfile
import time
import uuid
import zipfile
from pathlib import Path

from devservers._process import (
    CACHE_ROOT, HOST, MAVEN_DEPENDENCY_PLUGIN, DevServerError, RunningServer, ServerProcess, free_port,
    install_lock, maven_copy_dependencies, run_logged, tcp_probe, wait_ready)

KAFKA_VERSION = "4.4.0"
# Maven 3.8's default binding of the dependency plugin is the 2013 release 2.8.
# Kafka 4.x logs through slf4j 1.7 and log4j2 but leaves the bridge to the distribution.
_SLF4J_BINDING = "org.apache.logging.log4j:log4j-slf4j-impl"
_JVM_FLAGS = ["-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC", "-Xshare:auto", "-Djava.awt.headless=true"]
_DATA_ROOT = CACHE_ROOT / "kafka-data"

_POM = """<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>local.devservers</groupId>
  <artifactId>kafka-runtime</artifactId>
  <version>{version}</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>kafka_2.13</artifactId>
      <version>{version}</version>
    </dependency>
  </dependencies>
</project>
"""

# To stdout, which goes to the process's log file; INFO only for "Kafka Server started"
# (INFO everywhere writes ~3000 lines per start and costs 0.6 s).
_LOG4J2 = """status = warn
appender.out.type = Console
appender.out.name = out
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = warn
rootLogger.appenderRef.out.ref = out
logger.started.name = kafka.server.KafkaRaftServer
logger.started.level = info
"""


def install(version: str = KAFKA_VERSION) -> Path:
    """Fetch kafka_2.13:<version> and its runtime dependencies; return the Kafka home.

    Idempotent: a finished install is marked and skipped. Needs ``java`` and
    ``mvn``; Maven's local repository is its default (~/.m2).
    """
    home = CACHE_ROOT / f"kafka-{version}"
    if (home / ".installed").exists():
        return home
    for tool in ("java", "mvn"):
        if shutil.which(tool) is None:
            raise DevServerError(f"installing Kafka {version} needs `{tool}` on PATH")
    with install_lock(f"kafka-{version}"):
        if (home / ".installed").exists():
            return home
        home.mkdir(parents=True, exist_ok=True)
        libs = home / "libs"
        mvn, staging = maven_copy_dependencies("kafka-install", home, _POM.format(version=version))
        # The binding must match the log4j-core that Kafka itself depends on.
        log4j = _jar_version(staging, "log4j-core")
        run_logged("kafka-install", [*mvn, f"{MAVEN_DEPENDENCY_PLUGIN}:copy",
                                     f"-Dartifact={_SLF4J_BINDING}:{log4j}", f"-DoutputDirectory={staging}"])
        core = staging / f"kafka_2.13-{version}.jar"
        if not core.exists():
            raise DevServerError(f"Maven did not fetch {core.name} into {staging}")
        with zipfile.ZipFile(core) as jar:
            missing = {"kafka/Kafka.class", "kafka/tools/StorageTool.class"} - set(jar.namelist())
        if missing:
            raise DevServerError(f"{core.name} lacks {sorted(missing)}: a Kafka layout this module does not know")
        shutil.rmtree(libs, ignore_errors=True)
        staging.rename(libs)
        (home / "log4j2.properties").write_text(_LOG4J2)
        _format_template(home)
        (home / ".installed").write_text(version + "\n")
    return home


class KafkaBroker(RunningServer):
    """One running broker. ``stop()`` deletes its data; ``restart()`` keeps data and port;
    ``kill()`` crashes it (SIGKILL), keeping both for a ``restart()``."""

    def __init__(self, home: Path, data_dir: Path, port: int, controller_port: int, heap: str):
        self.home = home
        self.data_dir = data_dir
        self.port = port
        self.controller_port = controller_port
        self.heap = heap
        self.process: ServerProcess | None = None
        self._dumping_archive: Path | None = None

    def __repr__(self) -> str:
        return f"KafkaBroker(bootstrap_servers={self.bootstrap_servers!r}, data_dir='{self.data_dir}')"

    @property
    def bootstrap_servers(self) -> str:
        return f"{HOST}:{self.port}"

    def create_topic(self, name: str, partitions: int = 4, config: dict[str, str] | None = None,
                     timeout: float = 30.0) -> str:
        """Create a topic and wait until every partition has a leader; return its name."""
        from confluent_kafka.admin import AdminClient, NewTopic

        admin = AdminClient({"bootstrap.servers": self.bootstrap_servers, "log_level": 0})
        futures = admin.create_topics([NewTopic(name, partitions, 1, config=config or {})],
                                      operation_timeout=timeout, request_timeout=timeout)
        futures[name].result(timeout)
        deadline = time.monotonic() + timeout
        while True:
            topic = admin.list_topics(name, timeout=timeout).topics.get(name)
            if (topic is not None and topic.error is None and len(topic.partitions) == partitions
                    and all(p.leader >= 0 and p.error is None for p in topic.partitions.values())):
                return name
            if time.monotonic() > deadline:
                raise DevServerError(f"topic {name!r}: not every partition has a leader after {timeout}s")
            time.sleep(0.05)

    def restart(self, timeout: float = 120.0) -> None:
        """Stop the broker gracefully and start it again on the same port and data."""
        self._halt()
        self._launch(timeout)

    def kill(self) -> None:
        """SIGKILL the broker, as a crash would: no shutdown, no flush, no clean
        leadership hand-off. Data and port are kept; ``restart()`` starts it again."""
        proc = self.process
        if proc is None or not proc.running:
            return
        dumping, self._dumping_archive = self._dumping_archive, None
        proc._signal_group(signal.SIGKILL)
        proc.stop(timeout=30.0)  # reaps it and closes its log
        if dumping is not None:
            dumping.unlink(missing_ok=True)  # a class archive cut short is useless

    def stop(self) -> None:
        self._halt()
        shutil.rmtree(self.data_dir, ignore_errors=True)
        _live.discard(self)

    def _launch(self, timeout: float) -> None:
        archive = _archive_path(self.home)
        flags = [f"-Xmx{self.heap}", "-Xms64m", *_JVM_FLAGS]
        if archive.exists():
            flags.append(f"-XX:SharedArchiveFile={archive}")
        else:
            # This run records the classes it loads; _halt() keeps them if it exits cleanly.
            archive.parent.mkdir(parents=True, exist_ok=True)
            self._dumping_archive = archive.with_name(f"{archive.stem}.{os.getpid()}.{self.port}.tmp")
            flags.append(f"-XX:ArchiveClassesAtExit={self._dumping_archive}")
        self.process = ServerProcess("kafka", [
            "java", *flags, f"-Dlog4j2.configurationFile={self.home / 'log4j2.properties'}",
            f"@{_classpath_argfile(self.home)}", "kafka.Kafka", str(self.data_dir / "server.properties")])
        wait_ready(self.process, _metadata_probe(self.port), timeout=timeout,
                   target=f"{self.bootstrap_servers} (metadata request)")

    def _halt(self) -> None:
        proc = self.process
        if proc is None:
            return
        dumped, self._dumping_archive = self._dumping_archive, None
        # Dumping the class archive at exit takes a few seconds more.
        proc.stop(timeout=60.0 if dumped else 30.0)
        if dumped is not None:
            # 143: the JVM ran its shutdown on SIGTERM; -9 would mean a half-written archive.
            if proc.returncode == 143 and dumped.exists() and dumped.stat().st_size > 0:
                os.replace(dumped, _archive_path(self.home))
            else:
                dumped.unlink(missing_ok=True)


def start(version: str = KAFKA_VERSION, *, heap: str = "512m", num_partitions: int = 4,
          timeout: float = 120.0, attempts: int = 3) -> KafkaBroker:
    """Install if needed, then start a new broker with empty storage on free ports."""
    home = install(version)
    for attempt in range(attempts):
        broker = _prepare(home, heap, num_partitions)
        _live.add(broker)
        try:
            broker._launch(timeout)
            _create_offsets_topic(broker.bootstrap_servers, timeout)
            return broker
        except DevServerError as exc:
            broker.stop()
            # A free port can be taken between free_port() and the broker's bind.
            if "address already in use" not in str(exc).lower() or attempt == attempts - 1:
                raise
        except BaseException:
            broker.stop()
            raise
    raise AssertionError("unreachable")


def _prepare(home: Path, heap: str, num_partitions: int) -> KafkaBroker:
    port, controller_port = free_port(), free_port()
    while controller_port == port:
        controller_port = free_port()
    _remove_orphaned_data()
    data_dir = Path(tempfile.mkdtemp(prefix=f"kafka-{os.getpid()}-{port}-", dir=_DATA_ROOT))
    storage = data_dir / "storage"
    shutil.copytree(home / "storage-template", storage)
    _write_meta_properties(storage)
    (data_dir / "server.properties").write_text(
        _server_properties(storage, port, controller_port, num_partitions))
    return KafkaBroker(home, data_dir, port, controller_port, heap)


def _remove_orphaned_data() -> None:
    """Delete data left by test processes that died without running atexit."""
    _DATA_ROOT.mkdir(parents=True, exist_ok=True)
    for path in _DATA_ROOT.glob("kafka-*-*-*"):
        owner = path.name.split("-")[1]
        if owner.isdigit() and not Path(f"/proc/{owner}").exists():
            shutil.rmtree(path, ignore_errors=True)


def _server_properties(storage: Path, port: int, controller_port: int, num_partitions: int) -> str:
    # A static quorum (controller.quorum.voters): formatted storage then holds no address.
    return f"""process.roles=broker,controller
node.id=1
controller.quorum.voters=1@{HOST}:{controller_port}
listeners=PLAINTEXT://{HOST}:{port},CONTROLLER://{HOST}:{controller_port}
advertised.listeners=PLAINTEXT://{HOST}:{port}
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs={storage}
num.partitions={num_partitions}
auto.create.topics.enable=false
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
min.insync.replicas=1
group.initial.rebalance.delay.ms=0
"""


def _format_template(home: Path) -> None:
    """Run Kafka's StorageTool once, into a template every broker copies.

    Formatting is a JVM start of its own (~1.6 s). With a static quorum what it
    writes depends only on the node id and the version; the ids that must be
    unique live in meta.properties, which ``_write_meta_properties`` renews.
    """
    template = home / "storage-template"
    shutil.rmtree(template, ignore_errors=True)
    props = home / "format.properties"
    props.write_text(_server_properties(template, 0, 1, 1))
    run_logged("kafka-format", [
        "java", "-Xmx256m", *_JVM_FLAGS, f"-Dlog4j2.configurationFile={home / 'log4j2.properties'}",
        f"@{_classpath_argfile(home)}", "kafka.tools.StorageTool", "format", "-t", _random_kafka_uuid(),
        "-c", str(props)])
    if not (template / "meta.properties").exists():
        raise DevServerError(f"kafka.tools.StorageTool format wrote no {template / 'meta.properties'}")


def _write_meta_properties(storage: Path) -> None:
    meta = storage / "meta.properties"
    fields = dict(line.split("=", 1) for line in meta.read_text().splitlines()
                  if "=" in line and not line.startswith("#"))
    fields["cluster.id"] = _random_kafka_uuid()
    fields["directory.id"] = _random_kafka_uuid()
    meta.write_text("".join(f"{key}={value}\n" for key, value in fields.items()))


def _random_kafka_uuid() -> str:
    # Kafka's Uuid.toString: URL-safe base64 of 16 bytes, unpadded, never starting
    # with '-' (it would read as a command-line flag).
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not text.startswith("-"):
            return text


def _metadata_probe(port: int):
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    # TCP first: librdkafka would log every refused connection while the JVM starts.
    listening = tcp_probe(HOST, port)
    admin = None

    def probe() -> bool:
        nonlocal admin
        if not listening():
            return False
        if admin is None:
            admin = AdminClient({"bootstrap.servers": f"{HOST}:{port}", "log_level": 0})
        try:
            return bool(admin.list_topics(timeout=2).brokers)
        except KafkaException:
            return False
    return probe


def _create_offsets_topic(bootstrap: str, timeout: float) -> None:
    """Have the broker create __consumer_offsets now (0.2 s) rather than on the first join.

    On a fresh broker librdkafka's classic-protocol consumer waits about 3 s on
    its coordinator-query backoff while that topic is made. (Not through
    list_consumer_group_offsets: librdkafka 2.16 crashes when that gets
    COORDINATOR_LOAD_IN_PROGRESS on an admin client.)
    """
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0})
    deadline = time.monotonic() + timeout
    while True:
        [future] = admin.describe_consumer_groups(["devservers-warm-up"], request_timeout=timeout).values()
        try:
            future.result(timeout)
            return
        except KafkaException as exc:  # COORDINATOR_LOAD_IN_PROGRESS while the topic is loaded
            if time.monotonic() > deadline:
                raise DevServerError(f"{bootstrap}: the group coordinator did not come up: {exc}") from exc
        time.sleep(0.05)


def _jar_version(libs: Path, artifact: str) -> str:
    for jar in libs.glob(f"{artifact}-*.jar"):
        version = jar.name[len(artifact) + 1:-len(".jar")]
        if version[:1].isdigit():
            return version
    raise DevServerError(f"no {artifact} jar among Kafka's runtime dependencies in {libs}")


def _classpath_argfile(home: Path) -> Path:
    """A java @argfile with ``-cp``: explicit and sorted, so the class-data-sharing
    archive always matches it, and short command lines in the logs."""
    argfile = home / "classpath.args"
    classpath = os.pathsep.join(str(p) for p in sorted((home / "libs").glob("*.jar")))
    text = f'-cp "{classpath}"\n'
    if not argfile.exists() or argfile.read_text() != text:
        partial = argfile.with_name(f"{argfile.name}.{os.getpid()}")
        partial.write_text(text)
        os.replace(partial, argfile)
    return argfile


def _archive_path(home: Path) -> Path:
    # An archive only loads into the JVM build that dumped it.
    java = Path(os.path.realpath(shutil.which("java") or "java"))
    try:
        stamp = f"{java}:{java.stat().st_mtime_ns}"
    except OSError:
        stamp = str(java)
    return home / "cds" / f"kafka-{uuid.uuid5(uuid.NAMESPACE_URL, stamp).hex[:12]}.jsa"


_live: set[KafkaBroker] = set()


@atexit.register  # registered after _process's, so it runs first: data dirs go too
def _stop_all() -> None:
    for broker in list(_live):
        broker.stop()
