"""`python -m devservers install [NAME|all]` and `python -m devservers run NAME`.

NAME is one of s3, azurite, gcs (object stores), gofakes3 (a fast S3 for the
benchmarks), kafka, pubsub (streaming sources and sinks), toxiproxy (added
latency for the benchmarks), expansion
(Beam's Java expansion service with KafkaIO), flink (a Flink session cluster:
a JobManager and two TaskManagers, with Beam's job server for it) and, install
only, prism (Beam's local portable runner).
"""

from __future__ import annotations

import argparse
import json
import shlex
import signal
import sys
import time

from devservers import DevServerError
from devservers._process import CACHE_ROOT

SERVERS = ("s3", "azurite", "gcs", "gofakes3", "kafka", "pubsub", "toxiproxy", "expansion", "flink")
TOOLS = ("prism",)  # installed, not run: Beam's local portable runner


def _module(name: str):
    import importlib

    return importlib.import_module({"s3": "devservers.s3", "azurite": "devservers.azurite",
                                    "gcs": "devservers.gcs", "gofakes3": "devservers.gofakes3",
                                    "kafka": "devservers.kafka",
                                    "pubsub": "devservers.pubsub",
                                    "toxiproxy": "devservers.toxiproxy",
                                    "expansion": "devservers.expansion",
                                    "flink": "devservers.flink",
                                    "prism": "devservers.prism"}[name])


def _install(names: list[str]) -> int:
    failed = False
    for name in names:
        started = time.monotonic()
        try:
            done = _module(name).install()
        except DevServerError as exc:
            print(f"{name}: FAILED: {exc}", file=sys.stderr)
            failed = True
            continue
        print(f"{name}: {done} ({time.monotonic() - started:.1f}s)")
    return 1 if failed else 0


def _run(name: str, auth: bool) -> int:
    module = _module(name)
    # SIGTERM ends the foreground run as Ctrl-C does, through the same cleanup.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        server = module.start(auth=True) if auth else module.start()
    except DevServerError as exc:
        print(f"{name}: FAILED to start: {exc}", file=sys.stderr)
        return 1
    with server:
        print(f"{name} ready in {server.startup_seconds:.1f}s: {server!r}")
        print(f"log: {server.log_path}")
        if hasattr(server, "storage_options"):
            print("storage_options:", json.dumps(server.storage_options(), indent=2))
        for attribute in ("bootstrap_servers", "emulator_host", "api_url", "address"):
            if hasattr(server, attribute):
                print(f"{attribute}: {getattr(server, attribute)}")
        if name == "flink":  # what a script needs to start a job on it
            print(f"flink_master: {server.flink_master}")
            print(f"web UI: {server.rest_url}")
            print(f"flink_job_server_jar: {server.job_server_jar}")
            print(f"pipeline flags: {' '.join(shlex.quote(a) for a in server.pipeline_args())}")
        print("Ctrl-C to stop.", flush=True)
        try:
            while server.process.running:
                time.sleep(0.5)
        except KeyboardInterrupt:
            print(f"\nstopping {name}")
            return 0
    print(f"{name} exited with code {server.process.returncode}; log {server.log_path}",
          file=sys.stderr)
    return 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m devservers",
        description=f"Real servers on 127.0.0.1 for tests and benchmarks (cache: {CACHE_ROOT}).")
    commands = parser.add_subparsers(dest="command", required=True)
    install = commands.add_parser("install", help="install or build what is missing")
    install.add_argument("what", nargs="?", default="all", choices=(*SERVERS, *TOOLS, "all"),
                         help="which server (default: all)")
    run = commands.add_parser("run", help="run one emulator in the foreground")
    run.add_argument("what", choices=SERVERS, help="which server")
    run.add_argument("--auth", action="store_true",
                     help="s3 only: check credentials (an IAM user is created)")
    args = parser.parse_args(argv)
    if args.command == "install":
        return _install(list(SERVERS + TOOLS) if args.what == "all" else [args.what])
    if args.auth and args.what != "s3":
        parser.error("--auth is for s3 only")
    return _run(args.what, args.auth)


if __name__ == "__main__":
    sys.exit(main())
