"""Rate limiting per API key (public routes: per client address): a token bucket in memory.

Each key may burst up to ``rate`` requests and refills at ``rate`` per minute; past that the API
answers 429 with ``Retry-After``.  In-process state: one server process (``micromarketing
serve`` runs one) sees all of a key's requests.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    """Token buckets keyed by caller; ``rate`` requests per minute (0 turns limiting off)."""

    def __init__(self, rate: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.clock = clock
        self._buckets: dict[str, _Bucket] = {}
        self._lock = threading.Lock()

    def hit(self, caller: str) -> float | None:
        """Take one request from ``caller``'s bucket: None if allowed, else seconds to wait."""
        if self.rate <= 0:
            return None
        per_second = self.rate / 60.0
        now = self.clock()
        with self._lock:
            bucket = self._buckets.get(caller)
            if bucket is None:
                if len(self._buckets) > 100_000:  # forget idle callers rather than grow forever
                    self._buckets.clear()
                bucket = self._buckets[caller] = _Bucket(float(self.rate), now)
            bucket.tokens = min(float(self.rate), bucket.tokens + (now - bucket.updated) * per_second)
            bucket.updated = now
            if bucket.tokens >= 1.0:
                bucket.tokens -= 1.0
                return None
            return (1.0 - bucket.tokens) / per_second


def retry_after(seconds: float) -> str:
    """A ``Retry-After`` value: whole seconds, at least 1."""
    return str(max(1, math.ceil(seconds)))
