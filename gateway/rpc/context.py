"""The upstream resources of an app: per network its nodes (each with its keep-alive
connections), their pool and its cache (``gateway.rpc.networks``), and one aiohttp session
for the nodes' WebSocket subscriptions."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web
from web3 import AsyncWeb3

from gateway.chain.web3 import CHAINS, WEB3, ChainClient, ChainClients
from gateway.config import SETTINGS, NetworkSettings, RpcSettings
from gateway.rpc.cache import MemoryCache
from gateway.rpc.networks import NETWORKS, Network, Networks
from gateway.rpc.nodeclient import NodeClient
from gateway.rpc.pool import NewHead, UpstreamPool
from gateway.rpc.provider import PoolProvider
from gateway.rpc.upstream import Upstream
from gateway.telemetry import TELEMETRY, Telemetry

UPSTREAM_SESSION = web.AppKey("upstream_session", aiohttp.ClientSession)
POOL = web.AppKey("pool", UpstreamPool)
CACHE = web.AppKey("cache", MemoryCache)


async def upstream_ctx(app: web.Application) -> AsyncIterator[None]:
    """Every node of every network with its own connections (at most
    ``upstream_pool.max_connections`` each), traced and propagating ``traceparent``; each
    network's pool checks its nodes' chain id and starts tracking heads. ``POOL``, ``CACHE``
    and ``WEB3`` are the default network's."""
    settings = app[SETTINGS]
    telemetry = app[TELEMETRY]
    connector = aiohttp.TCPConnector(
        limit=settings.upstream_pool.max_connections, ttl_dns_cache=300
    )
    async with aiohttp.ClientSession(connector=connector) as session:
        configured = settings.network_list()
        networks = Networks(
            [
                _network(
                    config,
                    config.rpc.over(
                        settings.rpc,
                        cache_max_bytes=settings.rpc.cache_max_bytes // len(configured),
                    ),
                    settings.upstream_pool.max_connections,
                    telemetry,
                )
                for config in configured
            ]
        )
        app[UPSTREAM_SESSION] = session
        app[NETWORKS] = networks
        default = networks.default
        app[POOL] = default.pool
        app[CACHE] = default.cache
        try:
            # Every network's nodes checked at once: start-up waits for the slowest
            # network, not for the sum of them.
            await asyncio.gather(*(network.pool.start() for network in networks))
            for network in networks:
                # The gateway's own chain work (contract wallets, anchoring, the relay) goes
                # through the pool too; without nodes there is none to do.
                if network.pool.upstreams:
                    network.web3 = AsyncWeb3(PoolProvider(network.pool))
            if default.web3 is not None:
                app[WEB3] = default.web3
            app[CHAINS] = ChainClients(
                [
                    ChainClient(
                        network.chain_id,
                        network.web3,
                        network.label,
                        default=network is default,
                    )
                    for network in networks
                    if network.web3 is not None and network.chain_id is not None
                ]
            )
            yield
        finally:
            await asyncio.gather(*(network.pool.stop() for network in networks))
            await asyncio.gather(
                *(upstream.close() for network in networks for upstream in network.pool.upstreams)
            )


def _network(
    config: NetworkSettings,
    rpc: RpcSettings,
    max_connections: int,
    telemetry: Telemetry,
) -> Network:
    metrics = telemetry.metrics.of_network(config.label)
    upstreams = [
        Upstream(
            upstream,
            NodeClient(upstream.url, max_connections=max_connections),
            tracer=telemetry.tracer,
            breaker_threshold=rpc.breaker_threshold,
            breaker_cooldown_s=rpc.breaker_cooldown_s,
        )
        for upstream in config.upstreams
    ]
    pool = UpstreamPool(upstreams, rpc, chain_id=config.chain_id, metrics=metrics)
    cache = MemoryCache(rpc.cache_max_bytes)

    def invalidate(head: NewHead) -> None:
        if head.reorg_from is not None:
            cache.invalidate_from(0)
        metrics.rpc_cache_bytes.set(cache.size)

    pool.on_head(invalidate)
    return Network(config, rpc, metrics, pool, cache, web3=None)
