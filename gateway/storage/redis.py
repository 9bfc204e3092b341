"""The Redis connection several replicas share (nonces, revocations, rate limits)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import redis.asyncio as aioredis
from aiohttp import web

from gateway.config import SETTINGS
from gateway.telemetry import TELEMETRY

REDIS = web.AppKey("redis", aioredis.Redis)


async def redis_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS].redis
    if settings.url is None:
        yield
        return
    client = aioredis.Redis.from_url(
        settings.url.get_secret_value(),
        socket_timeout=settings.timeout_s,
        socket_connect_timeout=settings.timeout_s,
        max_connections=100,
    )
    app[REDIS] = client
    app[TELEMETRY].metrics.rate_limiter_failures.labels("open")
    try:
        yield
    finally:
        await client.aclose()
