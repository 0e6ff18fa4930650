"""Prism, Beam's local portable runner, built from Beam's Go module at the SDK's version.

Offline, the DirectRunner cannot download Prism's release binary, so the
streaming job is given this one with --prism_location (pipeline.run does it).
"""

from __future__ import annotations

from pathlib import Path

from devservers._process import CACHE_ROOT, go_install

_MODULE = "github.com/apache/beam/sdks/v2/go/cmd/prism"
BINARY = CACHE_ROOT / "bin" / "prism"


def beam_version() -> str:
    import apache_beam

    return "v" + apache_beam.__version__


def install(version: str | None = None) -> Path:
    """`go install` Prism at the installed Beam's version, once; return the binary."""
    go_install("prism", _MODULE, version or beam_version(), BINARY)
    return BINARY
