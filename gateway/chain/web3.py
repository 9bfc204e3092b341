"""web3.py (AsyncWeb3) for the gateway's own chain work, on the app's shared HTTP session."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web
from web3 import AsyncHTTPProvider, AsyncWeb3

from gateway.rpc.context import POOL, UPSTREAM_SESSION

WEB3 = web.AppKey("web3", AsyncWeb3)


async def web3_ctx(app: web.Application) -> AsyncIterator[None]:
    """AsyncWeb3 on the first configured upstream, sharing the upstream connection pool
    (one pool per process). Without upstreams there is no chain work to do."""
    upstreams = app[POOL].upstreams
    if upstreams:
        timeout = aiohttp.ClientTimeout(total=upstreams[0].settings.timeout_s)
        provider = AsyncHTTPProvider(upstreams[0].url, request_kwargs={"timeout": timeout})
        await provider.cache_async_session(app[UPSTREAM_SESSION])
        app[WEB3] = AsyncWeb3(provider)
    yield
