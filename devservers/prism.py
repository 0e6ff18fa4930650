"""Prism, Beam's local portable runner, built from Beam's Go module at the SDK's version.

Offline, the DirectRunner cannot download Prism's release binary, so the
streaming job is given this one with --prism_location (pipeline.run does it).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from devservers._process import CACHE_ROOT, DevServerError, install_lock, run_logged

_MODULE = "github.com/apache/beam/sdks/v2/go/cmd/prism"
BINARY = CACHE_ROOT / "bin" / "prism"
_VERSION_FILE = CACHE_ROOT / "bin" / "prism.version"


def beam_version() -> str:
    import apache_beam

    return "v" + apache_beam.__version__


def install(version: str | None = None) -> Path:
    """`go install` Prism at the installed Beam's version, once; return the binary."""
    version = version or beam_version()
    if BINARY.exists() and _VERSION_FILE.exists() and _VERSION_FILE.read_text().strip() == version:
        return BINARY
    if shutil.which("go") is None:
        raise DevServerError("building Prism needs `go` on PATH")
    with install_lock("prism"):
        BINARY.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=BINARY.parent) as gobin:
            env = {**os.environ, "GOBIN": gobin, "CGO_ENABLED": "0", "GOFLAGS": "-mod=mod",
                   "GOTOOLCHAIN": "local"}
            run_logged("prism-install", ["go", "install", f"{_MODULE}@{version}"], env=env)
            os.replace(Path(gobin) / "prism", BINARY)
        _VERSION_FILE.write_text(version + "\n")
    return BINARY
