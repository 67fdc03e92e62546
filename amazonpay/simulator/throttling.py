"""Sandbox throttling (docs/amazon-pay-api.md section 9): a leaky bucket per public key id and
operation, answered with 429 TooManyRequests and Retry-After."""

from __future__ import annotations

import time

# Section 9, sandbox column: (max quota = burst, restore rate per second).
THROTTLE_LIMITS: dict[str, tuple[int, float]] = {
    "CompleteCheckoutSession": (2, 1.0),
    "CreateCheckoutSession": (5, 1.0),
    "GetCheckoutSession": (10, 1.0),
    "UpdateCheckoutSession": (5, 1.0),
    "CreateCharge": (2, 1.0),
    "CaptureCharge": (2, 1.0),
    "CancelCharge": (2, 1.0),
    "GetCharge": (5, 1.0),
    "GetChargePermission": (10, 1.0),
    "UpdateChargePermission": (5, 1.0),
    "CloseChargePermission": (2, 1.0),
    "CreateRefund": (2, 1.0),
    "GetRefund": (5, 1.0),
}


class TokenBucket:
    """Leaky bucket: `burst` tokens, refilled at `rate` per second (section 9)."""

    def __init__(self, burst: int, rate: float, now: float) -> None:
        self.burst = burst
        self.rate = rate
        self.tokens = float(burst)
        self.updated = now

    def take(self, now: float) -> float | None:
        """None when a token was taken, else the seconds until one is available."""
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= 1:
            self.tokens -= 1
            return None
        return (1 - self.tokens) / self.rate


class Throttle:
    """The buckets of every (public key id, operation) pair; the caller holds the lock."""

    def __init__(self) -> None:
        self._buckets: dict[tuple[str, str], TokenBucket] = {}

    def retry_after(self, public_key_id: str, operation: str) -> int | None:
        """None when the call may go ahead, else the whole seconds to put in Retry-After."""
        burst, rate = THROTTLE_LIMITS[operation]
        now = time.monotonic()
        bucket = self._buckets.setdefault((public_key_id, operation), TokenBucket(burst, rate, now))
        wait = bucket.take(now)
        return None if wait is None else max(1, round(wait))

    def clear(self) -> None:
        self._buckets.clear()
