"""web3.py's provider for the gateway's own chain work, over the upstream pool.

Contract-wallet checks, anchoring, the relay and deployments reach the nodes the way reads
do: the healthy nodes on the right chain, in the pool's order, failing over when one is
down, behind each node's breaker, with its timeouts and its traceparent. A request no node
could answer is ``NoUpstream`` (503 ``upstream.unavailable``), never a client library's
connection error.
"""

from __future__ import annotations

import itertools
from typing import Any

import orjson
from web3.providers.async_base import AsyncBaseProvider
from web3.types import RPCEndpoint, RPCResponse

from gateway.errors import UpstreamError
from gateway.rpc.pool import NoUpstream, UpstreamPool


class PoolProvider(AsyncBaseProvider):
    def __init__(self, pool: UpstreamPool) -> None:
        super().__init__()
        self.pool = pool
        self.ids = itertools.count(1)

    async def make_request(self, method: RPCEndpoint, params: Any) -> RPCResponse:  # noqa: ANN401  # web3's signature
        body = orjson.dumps(
            {"jsonrpc": "2.0", "id": next(self.ids), "method": method, "params": params}
        )
        try:
            reply, _ = await self.pool.forward(body, method=str(method))
        except UpstreamError as exc:
            raise NoUpstream(detail=f"{method}: {exc.detail or exc.message}") from exc
        try:
            decoded: RPCResponse = orjson.loads(reply)
        except orjson.JSONDecodeError as exc:
            raise NoUpstream(detail=f"{method}: the node's reply is not JSON") from exc
        return decoded

    async def is_connected(self, show_traceback: bool = False) -> bool:  # noqa: ARG002  # web3's signature
        return any(u.healthy and u.chain_ok for u in self.pool.upstreams)


__all__ = ["PoolProvider"]
