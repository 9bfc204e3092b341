"""The upstream resources of an app: one HTTP session, the nodes, their pool and the cache."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web
from web3 import AsyncWeb3

from gateway.chain.web3 import WEB3
from gateway.config import SETTINGS
from gateway.rpc.cache import MemoryCache
from gateway.rpc.pool import NewHead, UpstreamPool
from gateway.rpc.provider import PoolProvider
from gateway.rpc.upstream import Upstream
from gateway.telemetry import TELEMETRY

UPSTREAM_SESSION = web.AppKey("upstream_session", aiohttp.ClientSession)
POOL = web.AppKey("pool", UpstreamPool)
CACHE = web.AppKey("cache", MemoryCache)


async def upstream_ctx(app: web.Application) -> AsyncIterator[None]:
    """One client session (one connection pool) for every node, traced and propagating
    ``traceparent``; the pool checks chain ids and starts tracking heads."""
    settings = app[SETTINGS]
    telemetry = app[TELEMETRY]
    connector = aiohttp.TCPConnector(
        limit=settings.upstream_pool.max_connections, ttl_dns_cache=300
    )
    async with aiohttp.ClientSession(connector=connector) as session:
        upstreams = [
            Upstream(
                config,
                session,
                tracer=telemetry.tracer,
                breaker_threshold=settings.rpc.breaker_threshold,
                breaker_cooldown_s=settings.rpc.breaker_cooldown_s,
            )
            for config in settings.upstreams
        ]
        pool = UpstreamPool(
            upstreams, settings.rpc, chain_id=settings.chain_id, metrics=telemetry.metrics
        )
        cache = MemoryCache(settings.rpc.cache_max_bytes)

        def invalidate(head: NewHead) -> None:
            if head.reorg_from is not None:
                cache.invalidate_from(0)
            telemetry.metrics.rpc_cache_bytes.set(cache.size)

        pool.on_head(invalidate)
        app[UPSTREAM_SESSION] = session
        app[POOL] = pool
        app[CACHE] = cache
        await pool.start()
        try:
            # The gateway's own chain work (contract wallets, anchoring, the relay) goes
            # through the pool too; without nodes there is none to do.
            if pool.upstreams:
                app[WEB3] = AsyncWeb3(PoolProvider(pool))
            yield
        finally:
            await pool.stop()
