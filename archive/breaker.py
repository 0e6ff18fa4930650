"""Per destination: a circuit breaker for rejected credentials, and an outage clock.

CircuitBreaker: stop hammering a bucket that rejects our credentials.

After an authentication or authorization failure (the retries of one write
spent), the breaker opens: writes to that destination fail fast, without a
request, for `cooldown` seconds. Then one write is let through as a probe;
its success closes the breaker, its failure opens it again. Other tenants,
with other breakers, are not slowed.

OutageClock: how long a destination has answered nothing but transient
errors (throttling, 5xx, timeouts, refused or reset connections); any
success ends the outage. The retry policy holds writes while it is young.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Callable

from archive.errors import ErrorClass

TRIPPING = frozenset({ErrorClass.AUTH})


class CircuitOpen(Exception):
    """The destination's breaker is open: the write was not attempted."""

    def __init__(self, reason: str, retry_in: float):
        super().__init__(f"circuit open after {reason}; next probe in {retry_in:.0f} s")
        self.reason = reason
        self.retry_in = retry_in


@dataclass
class CircuitBreaker:
    cooldown: float = 30.0
    clock: Callable[[], float] = time.monotonic

    def __post_init__(self):
        self._lock = threading.Lock()
        self._open_until: float | None = None
        self._probing = False
        self._reason = ""

    @property
    def is_open(self) -> bool:
        with self._lock:
            return self._open_until is not None

    def admit(self) -> bool:
        """Raise CircuitOpen unless a write may go ahead; True when it is the probe."""
        with self._lock:
            if self._open_until is None:
                return False
            now = self.clock()
            if now >= self._open_until and not self._probing:
                self._probing = True
                return True
            raise CircuitOpen(self._reason, max(0.0, self._open_until - now))

    def record(self, error_class: ErrorClass | None, description: str = "", probe: bool = False) -> None:
        """The end of an admitted write: None for success, else its error class.

        Writes admitted before the breaker opened may end late: their success
        still proves the credentials, but only the probe's own end frees the
        probe slot, so no second probe slips in while one is out.
        """
        with self._lock:
            if error_class is None:
                self._open_until, self._probing = None, False
            elif error_class in TRIPPING:
                self._open_until = self.clock() + self.cooldown
                self._probing = False
                self._reason = f"{error_class.value} failure: {description}" if description else error_class.value
            elif probe:
                self._probing = False  # not a credentials verdict: let the next write probe


@dataclass
class OutageClock:
    clock: Callable[[], float] = time.monotonic

    def __post_init__(self):
        self._lock = threading.Lock()
        self._since: float | None = None

    def seconds(self) -> float:
        """How long the current outage has lasted; 0 when there is none."""
        since = self._since
        return 0.0 if since is None else max(0.0, self.clock() - since)

    def record(self, transient_failure: bool) -> None:
        """A write's answer: a transient failure starts the outage (if none is
        running); anything else the store answered ends it."""
        with self._lock:
            if not transient_failure:
                self._since = None
            elif self._since is None:
                self._since = self.clock()
