"""A run's name: what every file a run writes (outcomes, dead letters, index files,
manifests, erasure records) carries, so that no run overwrites another's."""

from __future__ import annotations

import secrets
import time


def new_run_id(now: float | None = None, suffix: str | None = None) -> str:
    """UTC time and a random suffix: sortable, and two runs started in one second differ."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(time.time() if now is None else now))
    return f"{stamp}-{suffix if suffix is not None else secrets.token_hex(3)}"
