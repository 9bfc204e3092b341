"""IdentityStore on Redis, for several replicas: each operation is one atomic Lua script."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from gateway.errors import StorageUnavailable
from gateway.identity.store import NonceState
from gateway.storage.database import observe_storage
from gateway.telemetry import Metrics

# KEYS[1] per-client set of outstanding nonces (score: expiry), KEYS[2] the nonce;
# ARGV: nonce, now, expires_at, cap, ttl_ms
_ISSUE = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[2])
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[4]) then return 0 end
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
redis.call('SET', KEYS[2], 'fresh:' .. ARGV[3], 'PX', ARGV[5])
return 1
"""
# KEYS[1] the nonce, KEYS[2] the client set is unknown here: the set entry expires by score.
# ARGV: now. Returns 'consumed' | 'unknown' | 'reused' | 'expired'.
_CONSUME = """
local value = redis.call('GET', KEYS[1])
if not value then return 'unknown' end
if value == 'used' then return 'reused' end
local expires = tonumber(string.sub(value, 7))
if tonumber(ARGV[1]) >= expires then return 'expired' end
redis.call('SET', KEYS[1], 'used', 'KEEPTTL')
return 'consumed'
"""
# The grace during which an expired nonce still says "expired" rather than "unknown".
_GRACE_S = 3600


class RedisIdentityStore:
    """IdentityStore on Redis (see gateway.identity.store for the contract)."""

    def __init__(self, client: aioredis.Redis, metrics: Metrics | None = None) -> None:
        self._redis = client
        self._metrics = metrics
        self._issue = client.register_script(_ISSUE)
        self._consume = client.register_script(_CONSUME)

    @contextlib.asynccontextmanager
    async def _operation(self, op: str) -> AsyncIterator[None]:
        """Counted and timed; Redis failures become StorageUnavailable (503)."""
        started = time.perf_counter()
        outcome = "ok"
        try:
            yield
        except (RedisError, OSError) as exc:
            outcome = "unavailable"
            raise StorageUnavailable(detail=f"redis: {exc}", code="redis.unavailable") from exc
        finally:
            if self._metrics is not None:
                observe_storage(self._metrics, "redis", op, outcome, started)

    async def issue_nonce(
        self, nonce: str, *, client: str, now: float, expires_at: float, max_outstanding: int
    ) -> bool:
        ttl_ms = int((expires_at - now + _GRACE_S) * 1000)
        async with self._operation("identity.issue_nonce"):
            stored = await self._issue(
                keys=[f"gw:nonces:{client}", f"gw:nonce:{nonce}"],
                args=[nonce, now, expires_at, max_outstanding, ttl_ms],
            )
        return int(stored) == 1

    async def consume_nonce(self, nonce: str, *, now: float) -> NonceState:
        async with self._operation("identity.consume_nonce"):
            state = await self._consume(keys=[f"gw:nonce:{nonce}"], args=[now])
        text = state.decode() if isinstance(state, bytes) else str(state)
        return NonceState(text) if text != "consumed" else NonceState.CONSUMED

    async def revoke(self, jti: str, *, now: float, expires_at: float) -> None:
        async with self._operation("identity.revoke"):
            await self._redis.set(
                f"gw:revoked:{jti}", b"1", exat=max(int(expires_at), int(now) + 1)
            )

    async def is_revoked(self, jti: str) -> bool:
        async with self._operation("identity.is_revoked"):
            return bool(await self._redis.exists(f"gw:revoked:{jti}"))

    async def purge(self, *, now: float) -> int:  # noqa: ARG002  # keys expire by themselves
        return 0
