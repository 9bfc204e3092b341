"""Rate limits: token buckets per key, behind an interface a shared (Redis) store can serve."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import redis.asyncio as aioredis
import structlog
from aiohttp import web
from redis.exceptions import RedisError

from gateway.config import SETTINGS
from gateway.errors import RateLimited, Unavailable
from gateway.storage.redis import REDIS
from gateway.telemetry import TELEMETRY
from gateway.telemetry.metrics import Metrics


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


async def take_or_refuse(  # noqa: PLR0913  # one refusal, said the same way everywhere
    limiter: RateLimiter,
    key: str,
    limit: Limit,
    *,
    metrics: Metrics,
    tier: str,
    message: str,
) -> None:
    """Take a token from ``key``'s bucket, or count the refusal and raise RateLimited (429
    with Retry-After)."""
    wait = await limiter.acquire(key, limit)
    if wait > 0:
        metrics.rate_limited.labels(tier).inc()
        raise RateLimited(message, retry_after_s=wait)


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


log = structlog.get_logger("gateway.ratelimit")

# KEYS[1] bucket; ARGV: rate_per_s, burst, cost, now. Returns the wait in ms (0: taken).
_TAKE = """
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local rate, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local cost, now = tonumber(ARGV[3]), tonumber(ARGV[4])
local tokens = tonumber(state[1]) or burst
local at = tonumber(state[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - at) * rate)
local wait = 0
if tokens >= cost then tokens = tokens - cost else wait = (cost - tokens) / rate end
redis.call('HSET', KEYS[1], 'tokens', tokens, 'at', now)
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
return tostring(wait)
"""


class RateLimiterUnavailable(Unavailable):
    """Fail-closed limits that cannot be checked: the caller's quota is not the reason."""

    code = "ratelimit.unavailable"
    default_message = "the rate limiter cannot be reached; try again shortly"

    def headers(self) -> dict[str, str]:
        return {"Retry-After": "1"}


class RedisRateLimiter:
    """Token buckets in Redis: one limit across every replica. When Redis does not answer,
    requests pass (``fail_open``) or are refused with 503 ``ratelimit.unavailable``
    (RateLimiterUnavailable), and the metric says so."""

    def __init__(self, client: aioredis.Redis, metrics: Metrics, *, fail_open: bool) -> None:
        self._take = client.register_script(_TAKE)
        self._metrics = metrics
        self._fail_open = fail_open

    async def acquire(self, key: str, limit: Limit, cost: float = 1.0) -> float:
        try:
            wait = await self._take(
                keys=[f"gw:bucket:{key}"], args=[limit.rate_per_s, limit.burst, cost, time.time()]
            )
        except RedisError as exc:
            outcome = "open" if self._fail_open else "closed"
            self._metrics.child(self._metrics.rate_limiter_failures, outcome).inc()
            log.warning("rate limiter unavailable", fail=outcome, error=str(exc)[:200])
            if self._fail_open:
                return 0.0
            raise RateLimiterUnavailable(detail=str(exc)[:200]) from exc
        return float(wait)


def limiter_for(app: web.Application) -> RateLimiter:
    """Buckets in Redis when configured (one limit across replicas), else in process."""
    shared = app.get(REDIS)
    if shared is None:
        return MemoryRateLimiter()
    fail_open = app[SETTINGS].redis.rate_limit_fail_open
    return RedisRateLimiter(shared, app[TELEMETRY].metrics, fail_open=fail_open)
