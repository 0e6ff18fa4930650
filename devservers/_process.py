"""The life of an emulator process: a free port, a log file, readiness, a sure stop.

Every process started here is stopped at interpreter exit (atexit), and, when it was
started from the main thread, also when this interpreter dies without running atexit
(SIGKILL, an unhandled SIGTERM): it is started under `setpriv --pdeathsig TERM`.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import http.client
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable, Iterator, Sequence

REPO_ROOT = Path(__file__).resolve().parent.parent
CACHE_ROOT = Path(os.environ.get("DEVSERVERS_CACHE") or REPO_ROOT / ".cache" / "devservers")
LOG_DIR = CACHE_ROOT / "logs"
HOST = "127.0.0.1"

_KEEP_LOGS_PER_NAME = 20
_POLL_SECONDS = 0.05
# What a server prints when the port was taken between free_port() and its bind
# (werkzeug and Go say the first, node the second).
_PORT_TAKEN_MARKERS = ("address already in use", "eaddrinuse")


class DevServerError(RuntimeError):
    """An emulator could not be installed or started; the message carries its log."""


def free_port(host: str = HOST) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def log_tail(path: Path, lines: int = 40) -> str:
    try:
        with open(path, "rb") as log:
            log.seek(0, os.SEEK_END)
            log.seek(max(0, log.tell() - 64 * 1024))
            text = log.read().decode(errors="replace")
    except OSError as exc:
        return f"(no log: {exc})"
    return "\n".join(text.splitlines()[-lines:])


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:  # pruned by a concurrent process
        return 0.0


def _new_log_path(stem: str) -> Path:
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    own = re.compile(rf"{re.escape(stem)}-\d{{8}}-\d{{6}}-\d+-\d+\.log")
    old = sorted((p for p in LOG_DIR.glob(f"{stem}-*.log") if own.fullmatch(p.name)),
                 key=_mtime)
    for path in old[: max(0, len(old) - _KEEP_LOGS_PER_NAME + 1)]:
        with contextlib.suppress(OSError):
            path.unlink()
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return LOG_DIR / f"{stem}-{stamp}-{os.getpid()}-{time.monotonic_ns() % 10**6}.log"


_live: set["ServerProcess"] = set()
_live_lock = threading.Lock()


class ServerProcess:
    """A child process in its own process group, its output going to a log file."""

    def __init__(self, name: str, argv: Sequence[str], *, env: dict[str, str] | None = None,
                 cwd: Path | str | None = None):
        self.name = name
        self.argv = list(argv)
        self.log_path = _new_log_path(name)
        self.startup_seconds: float | None = None
        self._created = time.monotonic()
        self._log = open(self.log_path, "ab", buffering=0)
        self._log.write(f"$ {' '.join(self.argv)}\n".encode())
        launcher: list[str] = []
        setpriv = shutil.which("setpriv")
        if setpriv and threading.current_thread() is threading.main_thread():
            # Death signal follows the forking *thread*: only safe from the main one.
            launcher = [setpriv, "--pdeathsig", "TERM", "--"]
        try:
            self._popen = subprocess.Popen(
                launcher + self.argv, stdin=subprocess.DEVNULL, stdout=self._log,
                stderr=subprocess.STDOUT, env=env, cwd=cwd, start_new_session=True)
        except OSError as exc:
            self._log.close()
            raise DevServerError(f"{name}: cannot run {self.argv[0]}: {exc}") from exc
        self._stop_lock = threading.Lock()
        with _live_lock:
            _live.add(self)

    @property
    def pid(self) -> int:
        return self._popen.pid

    @property
    def returncode(self) -> int | None:
        return self._popen.poll()

    @property
    def running(self) -> bool:
        return self._popen.poll() is None

    def _signal_group(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._popen.pid, sig)

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM to the process group, then SIGKILL if it is still there."""
        with self._stop_lock:
            if self._popen.poll() is None:
                self._signal_group(signal.SIGTERM)
                try:
                    self._popen.wait(timeout)
                except subprocess.TimeoutExpired:
                    self._signal_group(signal.SIGKILL)
                    self._popen.wait(timeout)
            if not self._log.closed:
                self._log.close()
        with _live_lock:
            _live.discard(self)


def _stop_all() -> None:
    with _live_lock:
        live = list(_live)
    for proc in live:
        with contextlib.suppress(Exception):
            proc.stop(timeout=3.0)


atexit.register(_stop_all)


def tcp_probe(host: str, port: int) -> Callable[[], bool]:
    def probe() -> bool:
        try:
            with socket.create_connection((host, port), timeout=1.0):
                return True
        except OSError:
            return False
    return probe


def http_probe(host: str, port: int, path: str = "/") -> Callable[[], bool]:
    """Ready once anything answers in HTTP, whatever the status (Azurite says 400 to /)."""
    def probe() -> bool:
        conn = http.client.HTTPConnection(host, port, timeout=2.0)
        try:
            conn.request("GET", path)
            conn.getresponse().read()
            return True
        except (OSError, http.client.HTTPException):
            return False
        finally:
            conn.close()
    return probe


def wait_ready(proc: ServerProcess, probe: Callable[[], bool], *, timeout: float,
               target: str) -> float:
    """Wait until `probe()` is true; on failure stop the process and raise with its log."""
    deadline = time.monotonic() + timeout
    while True:
        if probe():
            proc.startup_seconds = time.monotonic() - proc._created
            return proc.startup_seconds
        if not proc.running:
            proc.stop()
            raise DevServerError(
                f"{proc.name} exited with code {proc.returncode} before answering on {target}."
                f"\nlog {proc.log_path}:\n{log_tail(proc.log_path)}")
        if time.monotonic() > deadline:
            proc.stop()
            raise DevServerError(
                f"{proc.name} did not answer on {target} within {timeout:.0f}s."
                f"\nlog {proc.log_path}:\n{log_tail(proc.log_path)}")
        time.sleep(_POLL_SECONDS)


def launch(name: str, argv_for_port: Callable[[int], Sequence[str]], *,
           probe_for_port: Callable[[int], Callable[[], bool]], timeout: float,
           env: dict[str, str] | None = None, cwd: Path | str | None = None,
           attempts: int = 3) -> tuple[ServerProcess, int]:
    """Start a server on a free port; try another port if that one got taken meanwhile."""
    for attempt in range(attempts):
        port = free_port()
        proc = ServerProcess(name, argv_for_port(port), env=env, cwd=cwd)
        try:
            wait_ready(proc, probe_for_port(port), timeout=timeout, target=f"{HOST}:{port}")
            return proc, port
        except DevServerError as exc:
            port_taken = any(m in str(exc).lower() for m in _PORT_TAKEN_MARKERS)
            if not port_taken or attempt == attempts - 1:
                raise
    raise AssertionError("unreachable")


@contextlib.contextmanager
def install_lock(name: str) -> Iterator[None]:
    """One installer at a time per tool, across processes (pytest-xdist workers)."""
    CACHE_ROOT.mkdir(parents=True, exist_ok=True)
    with open(CACHE_ROOT / f".{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def run_logged(name: str, argv: Sequence[str], *, env: dict[str, str] | None = None,
               cwd: Path | str | None = None, timeout: float = 1800) -> Path:
    """Run an install step to completion with its output in a log; raise with the tail."""
    log_path = _new_log_path(name)
    with open(log_path, "wb") as log:
        log.write(f"$ {' '.join(argv)}\n".encode())
        log.flush()
        try:
            rc = subprocess.run(list(argv), stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, env=env, cwd=cwd,
                                timeout=timeout).returncode
        except FileNotFoundError as exc:
            raise DevServerError(f"{name}: {argv[0]} is not installed ({exc})") from exc
        except subprocess.TimeoutExpired as exc:
            raise DevServerError(
                f"{name}: {' '.join(argv)} took over {timeout:.0f}s; log {log_path}:\n"
                f"{log_tail(log_path)}") from exc
    if rc != 0:
        raise DevServerError(
            f"{name}: {' '.join(argv)} failed with code {rc}; log {log_path}:\n"
            f"{log_tail(log_path)}")
    return log_path


class RunningServer:
    """Shared face of the emulators: a process to stop, usable in a `with` block."""

    process: ServerProcess

    @property
    def startup_seconds(self) -> float | None:
        return self.process.startup_seconds

    @property
    def log_path(self) -> Path:
        return self.process.log_path

    def stop(self) -> None:
        self.process.stop()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()


def go_install(name: str, package: str, version: str, binary: Path) -> bool:
    """``go install package@version`` into ``binary``, unless that version is there
    (a ``<binary>.version`` file says which). Returns True when it built it.

    Modules come through the Go module proxy; the toolchain is the machine's own
    (GOTOOLCHAIN=local: never a download of another Go)."""
    stamp = binary.with_name(binary.name + ".version")

    def current() -> bool:
        try:
            return binary.exists() and stamp.read_text().strip() == version
        except OSError:
            return False

    if current():
        return False
    go = shutil.which("go")
    if go is None:
        raise DevServerError(f"{name}: building it needs `go` on PATH")
    with install_lock(name):
        if current():
            return False
        binary.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=binary.parent) as gobin:
            env = {**os.environ, "GOBIN": gobin, "CGO_ENABLED": "0", "GOTOOLCHAIN": "local",
                   "GOFLAGS": (os.environ.get("GOFLAGS", "") + " -mod=mod -modcacherw").strip()}
            run_logged(f"{name}-install", [go, "install", f"{package}@{version}"], env=env)
            built = Path(gobin) / package.rstrip("/").rsplit("/", 1)[-1]
            if not built.exists():
                raise DevServerError(f"{name}: go install finished but {built.name} is missing")
            os.replace(built, binary)
        stamp.write_text(version + "\n")
    return True


MAVEN_DEPENDENCY_PLUGIN = "org.apache.maven.plugins:maven-dependency-plugin:3.8.1"


def maven_copy_dependencies(name: str, home: Path, pom: str) -> tuple[list[str], Path]:
    """Write `pom` into `home` and copy its runtime dependencies into a fresh
    `home/libs.partial`; return the mvn command (for more goals) and that folder."""
    staging = home / "libs.partial"
    shutil.rmtree(staging, ignore_errors=True)
    (home / "pom.xml").write_text(pom)
    mvn = ["mvn", "-B", "-q", "-f", str(home / "pom.xml")]
    run_logged(name, [*mvn, f"{MAVEN_DEPENDENCY_PLUGIN}:copy-dependencies", "-DincludeScope=runtime",
                      f"-DoutputDirectory={staging}"])
    return mvn, staging
