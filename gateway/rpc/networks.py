"""The chains one gateway serves: each network its own nodes, heads, cache and services.

A ``Network`` is everything of one chain: its upstream pool (nodes, heads, the served
tip, reorgs), its response cache, the web3.py client of the gateway's own chain work, and,
once ``rpc_ctx`` has run, its JSON-RPC service, subscription hub and WebSocket gateway.
Nothing of one network answers for another: caches, coalescing keys and head listeners
are the network's own. ``Networks`` finds one by chain id or alias (``/rpc/{network}``).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import web
from web3 import AsyncWeb3

from gateway.config import NetworkSettings, RpcSettings
from gateway.errors import NotFound
from gateway.rpc.cache import MemoryCache
from gateway.rpc.pool import UpstreamPool
from gateway.telemetry import Metrics

if TYPE_CHECKING:  # built later, by rpc_ctx, on top of the network
    from gateway.rpc.service import RpcService
    from gateway.rpc.subscriptions import SubscriptionHub
    from gateway.rpc.websocket import WebSocketGateway


class UnknownNetwork(NotFound):
    code = "rpc.unknown_network"
    default_message = "no such network"


@dataclass(eq=False)
class Network:
    settings: NetworkSettings
    rpc: RpcSettings  # [rpc] with the network's own settings over it
    metrics: Metrics  # with this network's label
    pool: UpstreamPool
    cache: MemoryCache
    web3: AsyncWeb3[Any] | None
    service: RpcService | None = field(default=None, repr=False)
    hub: SubscriptionHub | None = field(default=None, repr=False)
    websockets: WebSocketGateway | None = field(default=None, repr=False)

    @property
    def chain_id(self) -> int | None:
        """The configured chain id, else the one its nodes reported at start."""
        return self.settings.chain_id or self.pool.chain_id

    @property
    def label(self) -> str:
        return self.settings.label

    @property
    def names(self) -> tuple[str, ...]:
        """What ``/rpc/{network}`` accepts for it: its chain id and its alias."""
        chain_id = self.chain_id
        named = [str(chain_id)] if chain_id is not None else []
        return (*named, *([self.settings.alias] if self.settings.alias else []))

    def describe(self) -> dict[str, Any]:
        return {"chainId": self.chain_id, "alias": self.settings.alias}


class Networks:
    """The networks of an app; the first is the default (``/rpc``)."""

    def __init__(self, networks: list[Network]) -> None:
        if not networks:
            raise ValueError("an app serves at least one network")
        self._networks = networks
        self.default = networks[0]

    def __iter__(self) -> Iterator[Network]:
        return iter(self._networks)

    def __len__(self) -> int:
        return len(self._networks)

    def find(self, name: str) -> Network | None:
        """The network of a chain id or alias, as written in ``/rpc/{network}``."""
        for network in self._networks:
            if name in network.names:
                return network
        return None

    def named(self, name: str) -> Network:
        """``find``, or 404 ``rpc.unknown_network`` listing the known ones."""
        network = self.find(name)
        if network is None:
            known = [each.describe() for each in self._networks]
            names = ", ".join(name for each in self._networks for name in each.names)
            raise UnknownNetwork(f"no network {name[:80]!r}; known: {names}", data=known)
        return network

    def for_chain(self, chain_id: int) -> Network | None:
        return next((n for n in self._networks if n.chain_id == chain_id), None)

    def chain_ids(self) -> frozenset[int]:
        return frozenset(n.chain_id for n in self._networks if n.chain_id is not None)


NETWORKS = web.AppKey("networks", Networks)
