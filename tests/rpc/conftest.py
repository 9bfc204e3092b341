"""Fixtures for the JSON-RPC gateway: a gateway on one or two real anvils."""

from __future__ import annotations

import contextlib
import itertools

import pytest

from gateway.app import create_app
from gateway.chain import DevChain
from tests.helpers.lane import LaneTestServer

_ids = itertools.count(1)


class Rpc:
    """Posts JSON-RPC to a gateway test client."""

    def __init__(self, client) -> None:
        self.client = client

    async def post(self, payload, headers=None):
        return await self.client.post("/rpc", json=payload, headers=headers or {})

    async def call(self, method, params=None, headers=None):
        response = await self.post(
            {"jsonrpc": "2.0", "id": next(_ids), "method": method, "params": params or []}, headers
        )
        assert response.status == 200, await response.text()
        return await response.json()

    async def result(self, method, params=None):
        reply = await self.call(method, params)
        assert "error" not in reply, reply
        return reply["result"]


@pytest.fixture(name="rpc_env")
def _rpc_env():
    return {
        "GATEWAY_RPC__HEALTH_INTERVAL_S": "0.2",
        "GATEWAY_RPC__HEALTH_TIMEOUT_S": "1",
        # limits have tests of their own; elsewhere they must not interfere
        "GATEWAY_RPC__ANONYMOUS__RATE_PER_S": "100000",
        "GATEWAY_RPC__ANONYMOUS__BURST": "100000",
    }


@pytest.fixture(name="gateway_rpc")
async def _gateway_rpc(aiohttp_client, anvil, make_settings, spans, rpc_env):
    settings = make_settings(upstreams=[anvil.url], GATEWAY_CHAIN_ID="31337", **rpc_env)
    client = await aiohttp_client(LaneTestServer(create_app(settings, span_exporters=[spans])))
    return Rpc(client)


@pytest.fixture(name="second_anvil")
def _second_anvil(tmp_path):
    with DevChain.start(log_dir=tmp_path / "anvil-2") as chain:
        yield chain


@pytest.fixture(name="fresh_anvil")
def _fresh_anvil(tmp_path):
    """An anvil of this test alone (tests that mine, reorg or kill it)."""
    with DevChain.start(log_dir=tmp_path / "anvil-own") as chain:
        yield chain


@pytest.fixture(name="three_nodes")
def _three_nodes(tmp_path):
    """Three anvils of this test: the same genesis, each its own state from there on."""
    with contextlib.ExitStack() as stack:
        yield [
            stack.enter_context(DevChain.start(log_dir=tmp_path / f"anvil-{i}")) for i in range(3)
        ]
