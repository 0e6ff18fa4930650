"""The retry policy: how often and how long to retry a store write.

Both seeds: throttling is handled (retried until it clears, within a budget),
other store errors such as AccessDenied are retried up to three times, with
exponential backoff and full jitter (Braze cites AWS's "Timeouts, retries and
backoff with jitter"). A write whose retries are spent is FAILED.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from archive.errors import TRANSIENT, ErrorClass


@dataclass(frozen=True)
class RetryPolicy:
    transient_retries: int = 8     # throttling, 5xx, timeouts, connection errors
    other_retries: int = 3         # AccessDenied / 403, missing bucket, other 4xx, unknown
    base_delay: float = 0.1        # seconds; the cap of the first backoff
    max_delay: float = 10.0        # seconds; no single wait is longer

    def __post_init__(self):
        if self.transient_retries < 0 or self.other_retries < 0:
            raise ValueError("retry counts must not be negative")
        if self.base_delay < 0 or self.max_delay < self.base_delay:
            raise ValueError("need 0 <= base_delay <= max_delay")

    def retries_for(self, error_class: ErrorClass) -> int:
        return self.transient_retries if error_class in TRANSIENT else self.other_retries

    def should_retry(self, error_class: ErrorClass, retries_done: int) -> bool:
        """After `retries_done` retries failed with this class, is another one allowed?"""
        return retries_done < self.retries_for(error_class)

    def backoff(self, retry_number: int, rng: random.Random | None = None) -> float:
        """Seconds to wait before retry `retry_number` (1-based): full jitter,
        uniform between 0 and min(max_delay, base_delay * 2 ** (retry_number - 1))."""
        cap = min(self.max_delay, self.base_delay * (2 ** max(0, retry_number - 1)))
        return (rng or random).uniform(0.0, cap)
