"""`--local_runner flink`: a Kafka stream on Flink's mini-cluster inside Beam's Flink
job server, the SDK harness as PROCESS workers, all on this machine.

    pipeline.run ──starts──> java -jar job-server.jar --flink-master [local]  (Beam's
         │                    FlinkRunner; stopped with the launcher)
         │                         └──> <worker dir>/boot (one per worker) ─ cd a private
         │                              folder of its own, exec beam-python-boot
         │                                   └──> python (the shim first on PATH): take the
         │                                        options file by its full path, cd back to
         │                                        the launcher's folder, exec this interpreter
         └── flags(named): what the user did not name, measured here (scenario c):
             one worker per core, 20 ms bundles, checkpoints every 10 s

Why the shims: beam-python-boot writes every pipeline option (credentials in
--storage_options among them) to `pipeline_options.json` in its working
folder, which would be the user's. Each boot runs in its own folder under a
0700 temporary one, removed when the launcher exits; the workers still run in
the launcher's folder, so relative paths (--spill_dir, a local --destination)
mean what they mean to the launcher.
"""

from __future__ import annotations

import atexit
import json
import os
import shlex
import shutil
import sys
import tempfile

# Flink's default 1 s bundle is the latency floor of a thin stream; 20 ms measured best
# here (5 ms: more per-bundle cost than it saves).
DEFAULTS = {"--flink_master": "[local]", "--environment_type": "PROCESS", "--max_bundle_time_mills": "20",
            "--checkpointing_interval": "10000"}


def flags(named: set[str]) -> list[str]:
    """The flags of a stream on the local Flink mini-cluster, except those the user
    named; ValueError when the job server or the boot binary is not installed."""
    extra = ["--runner=FlinkRunner"] + [f"{flag}={value}" for flag, value in DEFAULTS.items()
                                         if flag not in named]
    cores = str(os.cpu_count() or 1)
    extra += [f"{flag}={cores}" for flag in ("--parallelism", "--sdk_worker_parallelism") if flag not in named]
    if "--flink_job_server_jar" in named and "--environment_config" in named:
        return extra
    try:
        from devservers import flink as installed  # this checkout's, as Prism's binary is
    except ImportError:
        raise ValueError("--local_runner flink outside this checkout needs --flink_job_server_jar "
                         "and --environment_config (a beam-python-boot command)") from None
    for flag, path in (("--flink_job_server_jar", installed.JOB_SERVER_JAR),
                       ("--environment_config", installed.BOOT)):
        if flag not in named and not path.exists():
            raise ValueError(f"no {path.name} at {path}: run `python -m devservers install flink` (or name {flag})")
    if "--flink_job_server_jar" not in named:
        extra.append(f"--flink_job_server_jar={installed.JOB_SERVER_JAR}")
    if "--environment_config" not in named:
        extra.append("--environment_config=" + json.dumps({"command": worker_boot(str(installed.BOOT))}))
    return extra


def worker_boot(boot: str, launch_dir: str | None = None) -> str:
    """The boot command for this launcher's workers: a script that runs `boot` in a
    private folder of its own, with a `python` first on PATH that returns to
    `launch_dir` (default: the current folder) and runs this interpreter. Sets
    RUN_PYTHON_SDK_IN_DEFAULT_ENVIRONMENT and PATH, which the job server passes on."""
    home = tempfile.mkdtemp(prefix="message-archiver-workers-")  # 0700
    atexit.register(shutil.rmtree, home, True)
    launch_dir = os.path.abspath(launch_dir or os.getcwd())
    os.mkdir(os.path.join(home, "bin"))
    _script(os.path.join(home, "boot"),
            f'own=$(mktemp -d {shlex.quote(home)}/worker.XXXXXX) && cd "$own" || exit 1\n'
            f'exec {shlex.quote(boot)} "$@"\n')
    _script(os.path.join(home, "bin", "python"),
            'case "${PIPELINE_OPTIONS_FILE:-}" in\n'
            '  /* | "") ;;\n'
            '  *) export PIPELINE_OPTIONS_FILE="$PWD/$PIPELINE_OPTIONS_FILE" ;;\n'
            'esac\n'
            f'cd {shlex.quote(launch_dir)} || exit 1\n'
            f'exec {shlex.quote(sys.executable)} "$@"\n')
    os.environ["RUN_PYTHON_SDK_IN_DEFAULT_ENVIRONMENT"] = "1"
    os.environ["PATH"] = os.path.join(home, "bin") + os.pathsep + os.environ.get("PATH", "")
    return os.path.join(home, "boot")


def _script(path: str, body: str) -> None:
    with open(path, "w") as handle:
        handle.write("#!/bin/sh\n" + body)
    os.chmod(path, 0o700)
