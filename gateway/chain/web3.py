"""web3.py (AsyncWeb3) for the gateway's own chain work: contract-wallet checks, anchoring,
the relay. The app's instances are made by whoever owns the nodes (``rpc.context``: over
each network's upstream pool, with its failover, breakers and traced calls); features read
them here: ``WEB3`` is the default network's, ``CHAINS`` every network's by chain id."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from aiohttp import web
from web3 import AsyncWeb3


class ChainClients:
    """One web3.py client per network whose chain id is known, the default network first."""

    def __init__(self, clients: dict[int, AsyncWeb3[Any]]) -> None:
        self._clients = clients

    def get(self, chain_id: int) -> AsyncWeb3[Any] | None:
        return self._clients.get(chain_id)

    def __iter__(self) -> Iterator[tuple[int, AsyncWeb3[Any]]]:
        return iter(self._clients.items())

    def __contains__(self, chain_id: object) -> bool:
        return chain_id in self._clients

    @property
    def default_chain_id(self) -> int | None:
        return next(iter(self._clients), None)


WEB3 = web.AppKey("web3", AsyncWeb3)
CHAINS = web.AppKey("chains", ChainClients)

__all__ = ["CHAINS", "WEB3", "ChainClients"]
