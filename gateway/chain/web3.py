"""web3.py (AsyncWeb3) for the gateway's own chain work: contract-wallet checks, anchoring.

It has an HTTP session of its own, instrumented with the official OpenTelemetry
aiohttp-client package: this traffic is small and every call gets a client span. The
JSON-RPC hot path (``gateway.rpc.upstream``) traces its calls itself, more cheaply.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
from aiohttp import web
from opentelemetry.instrumentation.aiohttp_client import create_trace_config
from opentelemetry.sdk.trace import TracerProvider
from web3 import AsyncHTTPProvider, AsyncWeb3

WEB3 = web.AppKey("web3", AsyncWeb3)


@contextlib.asynccontextmanager
async def open_web3(
    url: str, *, timeout_s: float, tracer_provider: TracerProvider
) -> AsyncIterator[AsyncWeb3[Any]]:
    """AsyncWeb3 on ``url`` with a traced session of its own, closed on exit. Whoever owns
    the nodes decides which one (``rpc.context.upstream_ctx``: the first on the right chain)."""
    trace_config = create_trace_config(tracer_provider=tracer_provider)
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    async with aiohttp.ClientSession(trace_configs=[trace_config], timeout=timeout) as session:
        provider = AsyncHTTPProvider(url)
        await provider.cache_async_session(session)
        yield AsyncWeb3(provider)


__all__ = ["WEB3", "open_web3"]
