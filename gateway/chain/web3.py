"""web3.py (AsyncWeb3) for the gateway's own chain work: contract-wallet checks, anchoring.

It has an HTTP session of its own, instrumented with the official OpenTelemetry
aiohttp-client package: this traffic is small and every call gets a client span. The
JSON-RPC hot path (``gateway.rpc.upstream``) traces its calls itself, more cheaply.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web
from opentelemetry.instrumentation.aiohttp_client import create_trace_config
from web3 import AsyncHTTPProvider, AsyncWeb3

from gateway.rpc.context import POOL
from gateway.telemetry import TELEMETRY

WEB3 = web.AppKey("web3", AsyncWeb3)


async def web3_ctx(app: web.Application) -> AsyncIterator[None]:
    """AsyncWeb3 on the first configured node on the right chain. Without nodes there is
    no chain work to do."""
    upstreams = [u for u in app[POOL].upstreams if u.chain_ok] or app[POOL].upstreams
    if not upstreams:
        yield
        return
    trace_config = create_trace_config(tracer_provider=app[TELEMETRY].tracer_provider)
    timeout = aiohttp.ClientTimeout(total=upstreams[0].settings.timeout_s)
    async with aiohttp.ClientSession(trace_configs=[trace_config], timeout=timeout) as session:
        provider = AsyncHTTPProvider(upstreams[0].url)
        await provider.cache_async_session(session)
        app[WEB3] = AsyncWeb3(provider)
        yield


__all__ = ["WEB3", "web3_ctx"]
