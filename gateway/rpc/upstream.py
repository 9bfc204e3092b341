"""One upstream Ethereum node over HTTP JSON-RPC; foreign errors become UpstreamError here."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import aiohttp
import orjson

from gateway.config import UpstreamSettings
from gateway.errors import UpstreamError, UpstreamTimeout


class Upstream:
    """A node the gateway forwards to. Owns no session: the app's pool is shared."""

    def __init__(self, settings: UpstreamSettings, session: aiohttp.ClientSession) -> None:
        self.settings = settings
        self.name = settings.name
        self.url = settings.url
        self._session = session
        self._ids = itertools.count(1)
        self._timeout = aiohttp.ClientTimeout(total=settings.timeout_s)

    async def call(
        self, method: str, params: list[Any] | None = None, *, timeout_s: float | None = None
    ) -> Any:  # noqa: ANN401  # JSON result
        """Send one JSON-RPC call; returns its ``result`` or raises UpstreamError."""
        payload = orjson.dumps(
            {"jsonrpc": "2.0", "id": next(self._ids), "method": method, "params": params or []}
        )
        timeout = self._timeout if timeout_s is None else aiohttp.ClientTimeout(total=timeout_s)
        try:
            async with self._session.post(
                self.url, data=payload, timeout=timeout,
                headers={"Content-Type": "application/json"},
            ) as response:  # fmt: skip
                body = await response.read()
                if response.status >= 400:
                    raise UpstreamError(detail=f"{self.name}: HTTP {response.status}")
        except TimeoutError as exc:
            raise UpstreamTimeout(detail=f"{self.name}: {method} timed out") from exc
        except (aiohttp.ClientError, OSError) as exc:
            raise UpstreamError(detail=f"{self.name}: {type(exc).__name__}: {exc}") from exc
        try:
            reply = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise UpstreamError(detail=f"{self.name}: reply is not JSON") from exc
        if not isinstance(reply, dict):
            raise UpstreamError(detail=f"{self.name}: reply is not a JSON-RPC object")
        if "error" in reply:
            raise UpstreamError(detail=f"{self.name}: {method} failed: {reply['error']}")
        return reply.get("result")

    async def chain_id(self, *, timeout_s: float | None = None) -> int:
        result = await self.call("eth_chainId", timeout_s=timeout_s)
        try:
            return int(result, 16)
        except (TypeError, ValueError) as exc:
            raise UpstreamError(detail=f"{self.name}: eth_chainId gave {result!r}") from exc


async def check_upstream(upstream: Upstream, *, chain_id: int | None, timeout_s: float) -> str:
    """Readiness of one upstream: ``ok`` or the reason it is not."""
    try:
        actual = await upstream.chain_id(timeout_s=timeout_s)
    except UpstreamError as exc:
        return "timeout" if isinstance(exc, UpstreamTimeout) else "unreachable"
    except asyncio.CancelledError:
        raise
    if chain_id is not None and actual != chain_id:
        return f"wrong chain {actual} (want {chain_id})"
    return "ok"
