"""A real Apache Flink session cluster on 127.0.0.1, and Beam's Flink job server for it.

    install():  Maven Central ─ beam-runners-flink-1.19 + flink-runtime-web ─▶ <cache>/flink-…/libs
                                  └─ job-server.jar (a manifest: Main-Class + Class-Path libs/…)
                go module proxy ─ beam/sdks/v2/python/container ─▶ <cache>/bin/beam-python-boot
    start():    JobManager JVM (REST + web UI) ◀── TaskManager JVM × 2 (2 slots each)
                     ▲
                job server (`--flink_job_server_jar`, started by Beam's FlinkRunner)
                     ▲
                python -m pipeline.run --runner FlinkRunner --flink_master 127.0.0.1:PORT

Flink's distribution tarball (flink-dist) is not on Maven Central, but its entry
points are in flink-runtime: StandaloneSessionClusterEntrypoint and
TaskManagerRunner, started here as `bin/jobmanager.sh` and `bin/taskmanager.sh`
would, with the memory flags Flink's own BashJavaUtils computes and the JVM
`--add-opens` flags Flink needs on Java 17. The libs are the job server's own
(they hold flink-runtime, -streaming-java, -clients), so the cluster and the
job server run the very same Flink.

Python workers: LOOPBACK (the workers run in the launching process) does not
work with more than one TaskManager: each TaskManager numbers its workers from
1, and the launcher's worker pool keys them by that id, so one TaskManager's
"stop worker 1-1" stops another's. On this cluster use PROCESS: each TaskManager
starts `beam-python-boot` processes, which run the SDK harness in the
TaskManager's own Python (RUN_PYTHON_SDK_IN_DEFAULT_ENVIRONMENT=1; PATH starts
with this virtualenv's bin).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from devservers import flink_sdf_patch, versions
from devservers._process import (
    CACHE_ROOT, HOST, DevServerError, RunningServer, ServerProcess, free_port, go_install,
    http_probe, install_lock, log_tail, maven_copy_dependencies, wait_ready)

HOME = CACHE_ROOT / f"flink-{versions.FLINK}-beam-{versions.FLINK_JOB_SERVER_BEAM}"
LIBS = HOME / "libs"
JOB_SERVER_JAR = HOME / "job-server.jar"
PATCH_JAR = HOME / "patch" / f"{flink_sdf_patch.PATCH_NAME}.jar"  # first on every class path
BOOT = CACHE_ROOT / "bin" / "beam-python-boot"
_BOOT_MODULE = "github.com/apache/beam/sdks/v2/python/container"

_POM = """<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>local.devservers</groupId>
  <artifactId>beam-flink-job-server</artifactId>
  <version>{beam}</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.beam</groupId>
      <artifactId>beam-runners-flink-{flink_minor}</artifactId>
      <version>{beam}</version>
    </dependency>
    <dependency>
      <groupId>org.apache.flink</groupId>
      <artifactId>flink-runtime-web</artifactId>
      <version>{flink}</version>
    </dependency>
    <dependency>
      <groupId>org.slf4j</groupId>
      <artifactId>slf4j-simple</artifactId>
      <version>1.7.36</version>
    </dependency>
  </dependencies>
</project>
"""

# What Flink's own scripts pass on Java 17 (env.java.opts.all in its default config).
JAVA17_FLAGS = [
    "--add-exports=java.base/sun.net.util=ALL-UNNAMED",
    "--add-exports=java.rmi/sun.rmi.registry=ALL-UNNAMED",
    "--add-exports=java.security.jgss/sun.security.krb5=ALL-UNNAMED",
    *(f"--add-opens=java.base/{package}=ALL-UNNAMED" for package in (
        "java.lang", "java.net", "java.io", "java.nio", "sun.nio.ch", "java.lang.reflect",
        "java.text", "java.time", "java.util", "java.util.concurrent",
        "java.util.concurrent.atomic", "java.util.concurrent.locks")),
]


def install() -> Path:
    """The job server's libs and launcher jar (Maven), and the PROCESS boot binary (Go).
    Idempotent; returns the launcher jar."""
    go_install("beam-python-boot", _BOOT_MODULE, "v" + versions.BEAM_PYTHON_SDK, BOOT)
    if (HOME / ".installed").exists() and PATCH_JAR.exists():
        return JOB_SERVER_JAR
    for tool in ("java", "mvn"):
        if shutil.which(tool) is None:
            raise DevServerError(f"the Flink cluster needs `{tool}` on PATH")
    with install_lock("flink"):
        if (HOME / ".installed").exists() and PATCH_JAR.exists():
            return JOB_SERVER_JAR
        HOME.mkdir(parents=True, exist_ok=True)
        if not (HOME / ".installed").exists():
            pom = _POM.format(beam=versions.FLINK_JOB_SERVER_BEAM, flink=versions.FLINK,
                              flink_minor=versions.FLINK_MINOR)
            _, staging = maven_copy_dependencies("flink-install", HOME, pom)
            shutil.rmtree(LIBS, ignore_errors=True)
            staging.rename(LIBS)
        patch = flink_sdf_patch.build(HOME, LIBS, versions.FLINK_JOB_SERVER_BEAM, versions.FLINK_MINOR)
        assert patch == PATCH_JAR
        write_launcher_jar(JOB_SERVER_JAR, LIBS, "org.apache.beam.runners.flink.FlinkJobServerDriver",
                           first=(PATCH_JAR,))
        (HOME / ".installed").write_text(f"{versions.FLINK_JOB_SERVER_BEAM} {versions.FLINK}\n")
    return JOB_SERVER_JAR


def write_launcher_jar(path: Path, libs: Path, main_class: str, first: tuple[Path, ...] = ()) -> None:
    """A jar of only a manifest: `java -jar` runs main_class with `first`, then the
    libs on the class path and Flink's Java 17 flags (Add-Opens/Add-Exports), which
    is what Beam's FlinkRunner needs for --flink_job_server_jar."""
    class_path = " ".join([*(p.relative_to(path.parent).as_posix() for p in first),
                           *(f"{libs.name}/{name}" for name in sorted(os.listdir(libs)) if name.endswith(".jar"))])
    opens = " ".join(f.split("=", 1)[1].rsplit("=", 1)[0] for f in JAVA17_FLAGS if f.startswith("--add-opens"))
    exports = " ".join(f.split("=", 1)[1].rsplit("=", 1)[0] for f in JAVA17_FLAGS if f.startswith("--add-exports"))
    lines = ["Manifest-Version: 1.0", f"Main-Class: {main_class}", f"Class-Path: {class_path}",
             f"Add-Opens: {opens}", f"Add-Exports: {exports}"]
    manifest = b"".join(_manifest_line(line) for line in lines) + b"\r\n"
    partial = path.with_suffix(".partial")
    with zipfile.ZipFile(partial, "w") as jar:
        jar.writestr("META-INF/MANIFEST.MF", manifest)
    os.replace(partial, path)


def _manifest_line(line: str) -> bytes:
    """Manifest lines are at most 72 bytes; longer ones continue after a space."""
    data = line.encode()
    parts = [data[:72]]
    data = data[72:]
    while data:
        parts.append(b" " + data[:71])
        data = data[71:]
    return b"\r\n".join(parts) + b"\r\n"


@dataclass
class FlinkCluster(RunningServer):
    """A running session cluster: `flink_master` is what --flink_master takes."""

    flink_master: str
    job_server_jar: Path
    boot: Path
    process: ServerProcess = field(repr=False)  # the JobManager
    task_managers: list[ServerProcess] = field(repr=False, default_factory=list)
    conf_dir: Path = field(repr=False, default=Path())
    checkpoints: Path = field(repr=False, default=Path())
    work_dir: Path | None = field(repr=False, default=None)
    slots_per_task_manager: int = field(repr=False, default=2)
    _start_task_manager: Callable[[str], ServerProcess] | None = field(repr=False, default=None)

    @property
    def rest_url(self) -> str:
        return f"http://{self.flink_master}"

    def rest(self, path: str):
        with urllib.request.urlopen(self.rest_url + path, timeout=10) as response:
            return json.loads(response.read())

    def pipeline_args(self, parallelism: int = 2) -> list[str]:
        """The job's flags to run on this cluster, one Python worker per slot."""
        return ["--runner=FlinkRunner", f"--flink_master={self.flink_master}",
                f"--flink_job_server_jar={self.job_server_jar}", "--environment_type=PROCESS",
                f"--environment_config={json.dumps({'command': str(self.boot)})}",
                f"--parallelism={parallelism}"]

    def kill_task_manager(self, index: int) -> None:
        """SIGKILL one TaskManager (its Python workers go with its process group)."""
        import signal
        self.task_managers[index]._signal_group(signal.SIGKILL)
        self.task_managers[index].stop()

    def add_task_manager(self, timeout: float = 60.0) -> None:
        """Start one more TaskManager (as an operator would after losing one)."""
        want = sum(1 for tm in self.task_managers if tm.running) + 1
        assert self._start_task_manager is not None
        self.task_managers.append(self._start_task_manager(f"tm{len(self.task_managers) + 1}"))
        _wait_task_managers(self, want, timeout)

    def stop(self) -> None:
        for tm in self.task_managers:
            tm.stop()
        self.process.stop()
        if self.work_dir is not None:  # its config, checkpoints and blobs: this cluster's own
            shutil.rmtree(self.work_dir, ignore_errors=True)


def _flink_conf(rpc_port: int, rest_port: int, slots: int, checkpoints: Path) -> str:
    settings = {
        "jobmanager.rpc.address": HOST, "jobmanager.rpc.port": rpc_port,
        "jobmanager.bind-host": HOST, "rest.address": HOST, "rest.bind-address": HOST,
        "rest.port": rest_port, "taskmanager.host": HOST, "taskmanager.bind-host": HOST,
        "taskmanager.numberOfTaskSlots": slots,
        "taskmanager.memory.process.size": "1536m", "taskmanager.memory.managed.fraction": 0.2,
        "jobmanager.memory.process.size": "768m",
        "cluster.evenly-spread-out-slots": "true",  # a job spans both TaskManagers
        "state.checkpoints.dir": checkpoints.as_uri(),
        "execution.checkpointing.externalized-checkpoint-retention": "RETAIN_ON_CANCELLATION",
        "heartbeat.timeout": 15000,  # a killed TaskManager is noticed in seconds
        "restart-strategy.type": "fixed-delay", "restart-strategy.fixed-delay.attempts": 20,
        "restart-strategy.fixed-delay.delay": "2 s",
    }
    return "".join(f"{key}: {value}\n" for key, value in settings.items())


def _resource_params(conf_dir: Path, which: str) -> tuple[list[str], list[str]]:
    """Flink's own memory arithmetic (what its bash scripts do): JVM flags, -D settings."""
    out = subprocess.run(
        ["java", "-cp", f"{LIBS}/*", "org.apache.flink.runtime.util.bash.BashJavaUtils", which,
         "--configDir", str(conf_dir)], capture_output=True, text=True, timeout=60)
    results = [line.split(":", 1)[1] for line in out.stdout.splitlines()
               if line.startswith("BASH_JAVA_UTILS_EXEC_RESULT:")]
    if out.returncode != 0 or len(results) < 2:
        raise DevServerError(f"flink: BashJavaUtils {which} failed:\n{out.stdout[-2000:]}{out.stderr[-2000:]}")
    return results[0].split(), results[1].split()


def _wait_task_managers(cluster: FlinkCluster, count: int, timeout: float) -> None:
    """Until `count` TaskManagers have registered *and* reported their slots.

    A TaskManager registers first and sends its slot report after, so
    /overview can show it with no slots for a moment; a job submitted then
    would wait for resources.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            overview = cluster.rest("/overview")
            if (overview["taskmanagers"] >= count
                    and overview["slots-total"] >= count * cluster.slots_per_task_manager):
                return
        except OSError:
            pass
        time.sleep(0.3)
    tail = "\n".join(log_tail(tm.log_path, 15) for tm in cluster.task_managers)
    raise DevServerError(f"flink: {count} TaskManagers did not register within {timeout:.0f}s\n{tail}")


def start(task_managers: int = 2, slots: int = 2, timeout: float = 120.0) -> FlinkCluster:
    """A JobManager and `task_managers` TaskManagers, each its own JVM, on loopback ports."""
    install()
    work = Path(tempfile.mkdtemp(prefix="flink-", dir=CACHE_ROOT))
    conf_dir, checkpoints = work / "conf", work / "checkpoints"
    conf_dir.mkdir()
    checkpoints.mkdir()
    rpc_port, rest_port = free_port(), free_port()
    (conf_dir / "flink-conf.yaml").write_text(_flink_conf(rpc_port, rest_port, slots, checkpoints))
    classpath = f"{PATCH_JAR}{os.pathsep}{LIBS}/*"
    jm_jvm, jm_dynamic = _resource_params(conf_dir, "GET_JM_RESOURCE_PARAMS")
    tm_jvm, tm_dynamic = _resource_params(conf_dir, "GET_TM_RESOURCE_PARAMS")
    jobmanager = ServerProcess(
        "flink-jobmanager",
        ["java", *JAVA17_FLAGS, *jm_jvm, "-cp", classpath,
         "org.apache.flink.runtime.entrypoint.StandaloneSessionClusterEntrypoint",
         "--configDir", str(conf_dir), *jm_dynamic], cwd=work)
    wait_ready(jobmanager, http_probe(HOST, rest_port, "/overview"), timeout=timeout,
               target=f"{HOST}:{rest_port}")
    # The TaskManagers' Python workers (PROCESS) run this interpreter's environment.
    env = {**os.environ, "RUN_PYTHON_SDK_IN_DEFAULT_ENVIRONMENT": "1",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}

    def start_task_manager(resource_id: str) -> ServerProcess:
        return ServerProcess(
            f"flink-taskmanager-{resource_id}",
            ["java", *JAVA17_FLAGS, *tm_jvm, "-cp", classpath,
             "org.apache.flink.runtime.taskexecutor.TaskManagerRunner", "--configDir", str(conf_dir),
             *tm_dynamic, "-D", f"taskmanager.resource-id={resource_id}"], env=env, cwd=work)

    cluster = FlinkCluster(flink_master=f"{HOST}:{rest_port}", job_server_jar=JOB_SERVER_JAR, boot=BOOT,
                           process=jobmanager, conf_dir=conf_dir, checkpoints=checkpoints, work_dir=work,
                           slots_per_task_manager=slots, _start_task_manager=start_task_manager)
    try:
        for n in range(task_managers):
            cluster.task_managers.append(start_task_manager(f"tm{n + 1}"))
        _wait_task_managers(cluster, task_managers, timeout)
    except BaseException:
        cluster.stop()
        raise
    return cluster
