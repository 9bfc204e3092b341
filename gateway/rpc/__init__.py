"""JSON-RPC gateway: upstream nodes, and (as it grows) policy, cache, rate limits, WebSocket."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web
from opentelemetry.instrumentation.aiohttp_client import create_trace_config

from gateway.config import SETTINGS
from gateway.rpc.upstream import Upstream, check_upstream
from gateway.telemetry import TELEMETRY

__all__ = ["UPSTREAMS", "UPSTREAM_SESSION", "Upstream", "check_upstream", "upstream_ctx"]

UPSTREAMS = web.AppKey("upstreams", tuple[Upstream, ...])
UPSTREAM_SESSION = web.AppKey("upstream_session", aiohttp.ClientSession)


async def upstream_ctx(app: web.Application) -> AsyncIterator[None]:
    """One client session (one connection pool) for every upstream, traced and propagating
    ``traceparent`` to the nodes."""
    settings = app[SETTINGS]
    connector = aiohttp.TCPConnector(
        limit=settings.upstream_pool.max_connections, ttl_dns_cache=300
    )
    trace_config = create_trace_config(tracer_provider=app[TELEMETRY].tracer_provider)
    async with aiohttp.ClientSession(connector=connector, trace_configs=[trace_config]) as session:
        app[UPSTREAM_SESSION] = session
        app[UPSTREAMS] = tuple(Upstream(upstream, session) for upstream in settings.upstreams)
        yield
