"""web3.py (AsyncWeb3) for the gateway's own chain work: contract-wallet checks, anchoring,
the relay. The app's instance is made by whoever owns the nodes (``rpc.context``: over the
upstream pool, with its failover, breakers and traced calls); features read it here."""

from __future__ import annotations

from aiohttp import web
from web3 import AsyncWeb3

WEB3 = web.AppKey("web3", AsyncWeb3)

__all__ = ["WEB3"]
