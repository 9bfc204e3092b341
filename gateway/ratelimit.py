"""Rate limits: token buckets per key, behind an interface a shared (Redis) store can serve."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Limit:
    """``rate_per_s`` tokens refill each second, up to ``burst``."""

    rate_per_s: float
    burst: float

    @classmethod
    def per_minute(cls, count: float, burst: float | None = None) -> Limit:
        return cls(rate_per_s=count / 60.0, burst=burst if burst is not None else count)


class RateLimiter(Protocol):
    async def acquire(self, key: str, limit: Limit, cost: float = 1.0) -> float:
        """Take ``cost`` tokens from ``key``'s bucket: 0.0 when allowed, else the seconds
        until the bucket holds enough (nothing is taken then)."""
        ...


class MemoryRateLimiter:
    """Buckets in this process, at most ``max_keys`` of them (least recently used go)."""

    def __init__(
        self, max_keys: int = 100_000, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._max_keys = max_keys
        self._clock = clock

    async def acquire(self, key: str, limit: Limit, cost: float = 1.0) -> float:
        return self.acquire_now(key, limit, cost)

    def acquire_now(self, key: str, limit: Limit, cost: float = 1.0) -> float:
        now = self._clock()
        tokens, updated = self._buckets.pop(key, (limit.burst, now))
        tokens = min(limit.burst, tokens + (now - updated) * limit.rate_per_s)
        wait = 0.0
        if tokens >= cost:
            tokens -= cost
        else:
            wait = (cost - tokens) / limit.rate_per_s if limit.rate_per_s > 0 else float("inf")
        self._buckets[key] = (tokens, now)
        if len(self._buckets) > self._max_keys:
            self._buckets.popitem(last=False)
        return wait
