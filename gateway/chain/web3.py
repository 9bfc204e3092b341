"""web3.py (AsyncWeb3) for the gateway's own chain work: contract-wallet checks, anchoring,
the relay. The app's instances are made by whoever owns the nodes (``rpc.context``: over
each network's upstream pool, with its failover, breakers and traced calls); features read
them here: ``WEB3`` is the default network's, ``CHAINS`` every network's by chain id."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from web3 import AsyncWeb3


@dataclass(frozen=True, slots=True)
class ChainClient:
    chain_id: int
    web3: AsyncWeb3[Any]
    label: str  # the network's value of the `network` label of metrics
    default: bool  # the default network's (served at /rpc)


class ChainClients:
    """One web3.py client per network whose chain id is known, the default network first."""

    def __init__(self, clients: list[ChainClient]) -> None:
        self._clients = {client.chain_id: client for client in clients}

    def get(self, chain_id: int) -> ChainClient | None:
        return self._clients.get(chain_id)

    def __iter__(self) -> Iterator[ChainClient]:
        return iter(self._clients.values())

    def __contains__(self, chain_id: object) -> bool:
        return chain_id in self._clients

    @property
    def default(self) -> ChainClient | None:
        return next((client for client in self if client.default), None)


WEB3 = web.AppKey("web3", AsyncWeb3)
CHAINS = web.AppKey("chains", ChainClients)

__all__ = ["CHAINS", "WEB3", "ChainClient", "ChainClients"]
