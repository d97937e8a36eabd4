"""Per-client token buckets: a client earns ``rate`` requests a second, saves at most ``burst``, spends one a request.

Pure: the clock is passed in, so the arithmetic is tested without waiting. One limiter lives in each server process;
with several processes (``ebl serve --workers N``) a client may get up to N times the rate.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    """Token buckets for up to ``max_clients`` clients; the least recently seen is forgotten (its bucket refills)."""

    def __init__(self, rate: float, burst: int, clock: Callable[[], float], max_clients: int = 100_000) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("a rate limit needs a positive rate and a burst of at least one request")
        self._rate, self._burst, self._clock, self._max_clients = rate, burst, clock, max_clients
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def take(self, client: str) -> int:
        """Spend one of ``client``'s tokens: 0 if it had one, else the whole seconds until it will (at least 1)."""
        now = self._clock()
        bucket = self._buckets.pop(client, None) or _Bucket(float(self._burst), now)
        bucket.tokens = min(float(self._burst), bucket.tokens + (now - bucket.updated) * self._rate)
        bucket.updated = now
        self._buckets[client] = bucket
        if len(self._buckets) > self._max_clients:
            self._buckets.popitem(last=False)
        if bucket.tokens >= 1:
            bucket.tokens -= 1
            return 0
        return max(1, math.ceil((1 - bucket.tokens) / self._rate))
