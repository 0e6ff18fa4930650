"""The retry policy: how often and how long to retry a store write.

Both seeds: throttling is handled (retried until it clears, within a budget),
other store errors such as AccessDenied are retried up to three times, with
exponential backoff and full jitter (Braze cites AWS's "Timeouts, retries and
backoff with jitter"). A write whose retries are spent is FAILED.

An outage is not a reason to fail thousands of messages: while a destination
has answered only with transient errors for less than `hold_seconds`, its
writes keep retrying past `transient_retries` (each wait still capped at
`max_delay`). The writes that hold their slots meanwhile stop the job from
reading more (back-pressure). Once the outage is older than the hold, the
ordinary budget applies again and the writes fail with the outage's reason.
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
    hold_seconds: float = 300.0    # seconds an outage (transient errors only) is waited out

    def __post_init__(self):
        if self.transient_retries < 0 or self.other_retries < 0:
            raise ValueError("retry counts must not be negative")
        if self.base_delay < 0 or self.max_delay < self.base_delay:
            raise ValueError("need 0 <= base_delay <= max_delay")
        if self.hold_seconds < 0:
            raise ValueError("hold_seconds must not be negative")

    def retries_for(self, error_class: ErrorClass) -> int:
        return self.transient_retries if error_class in TRANSIENT else self.other_retries

    def should_retry(self, error_class: ErrorClass, retries_done: int,
                     outage_seconds: float | None = None) -> bool:
        """After `retries_done` retries failed with this class, is another one allowed?

        `outage_seconds`: how long the destination has answered only with
        transient errors (None: not known); within the hold a transient error
        is always retried.
        """
        if error_class is ErrorClass.CONFLICT:
            return False
        if error_class in TRANSIENT and outage_seconds is not None and outage_seconds < self.hold_seconds:
            return True
        return retries_done < self.retries_for(error_class)

    def backoff(self, retry_number: int, rng: random.Random | None = None) -> float:
        """Seconds to wait before retry `retry_number` (1-based): full jitter,
        uniform between 0 and min(max_delay, base_delay * 2 ** (retry_number - 1))."""
        # Past 2**62 the doubling is far above any max_delay (and 2**n would overflow a float).
        cap = min(self.max_delay, self.base_delay * (2 ** min(62, max(0, retry_number - 1))))
        return (rng or random).uniform(0.0, cap)
