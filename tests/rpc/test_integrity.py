"""Answers never behind what the nodes have: a null lookup from a node that lags is asked
again further on; a node that never reported a head is never picked; a rogue node's head
far ahead of the rest does not move the served tip."""

from __future__ import annotations

import pytest
from aiohttp import web

from gateway.app import create_app
from gateway.chain import DevChain
from gateway.rpc.context import POOL
from tests.helpers.chain import deploy
from tests.helpers.fake_node import fake_node_app
from tests.helpers.lane import LaneTestServer
from tests.helpers.metrics import sample
from tests.rpc.conftest import Rpc

pytestmark = pytest.mark.integration


@pytest.fixture(name="paused_anvil")
def _paused_anvil(tmp_path):
    with DevChain.start(log_dir=tmp_path / "paused", extra_args=["--no-mining"]) as paused:
        yield paused


async def test_a_lagging_nodes_null_receipt_is_asked_again(
    aiohttp_client, make_settings, rpc_env, fresh_anvil, paused_anvil
):
    """The mining node has the receipt, the paused one (in rotation: a loose lag) does not."""
    settings = make_settings(
        upstreams=[fresh_anvil.url, paused_anvil.url],
        GATEWAY_RPC__MAX_LAG_BLOCKS="1000",
        GATEWAY_RPC__CACHE_ENABLED="false",
        GATEWAY_RPC__HEDGE_READS="false",
        **rpc_env,
    )
    client = await aiohttp_client(LaneTestServer(create_app(settings)))
    rpc = Rpc(client)
    deploy(fresh_anvil, "Guestbook", ["address"], ["0x" + "00" * 20])
    tx = fresh_anvil.rpc("eth_getBlockByNumber", ["latest", False])["transactions"][0]
    await client.app[POOL].poll_heads()
    for _ in range(20):  # the pool's order is random: the paused node is asked first often
        receipt = await rpc.result("eth_getTransactionReceipt", [tx])
        assert receipt is not None
        assert receipt["transactionHash"] == tx
    text = await (await client.get("/metrics")).text()
    found = sample(
        text, "gateway_rpc_empty_retries_total", method="eth_getTransactionReceipt", outcome="found"
    )
    assert found is not None
    assert found >= 1


def _answering(number: int, calls: list[str] | None = None):
    """A fake node's answer to single calls: the chain id, else ``number``."""

    async def on_call(_request: web.Request, body: dict) -> web.Response:
        if calls is not None:
            calls.append(body["method"])
        result = "0x7a69" if body["method"] == "eth_chainId" else hex(number)
        return web.json_response({"jsonrpc": "2.0", "id": body["id"], "result": result})

    return on_call


async def test_a_node_that_never_reported_a_head_is_never_picked(
    aiohttp_client, make_settings, rpc_env, anvil, aiohttp_server
):
    calls: list[str] = []
    node = await aiohttp_server(fake_node_app(_answering(0x99999, calls), head=None))
    settings = make_settings(
        upstreams=[f"http://127.0.0.1:{node.port}", anvil.url],
        GATEWAY_RPC__CACHE_ENABLED="false",
        **rpc_env,
    )
    rpc = Rpc(await aiohttp_client(LaneTestServer(create_app(settings))))
    for _ in range(20):
        assert int(await rpc.result("eth_blockNumber"), 16) < 0x99999
    assert "eth_blockNumber" not in calls


async def test_a_rogue_head_far_ahead_does_not_move_the_served_tip(
    aiohttp_client, make_settings, rpc_env, anvil, aiohttp_server
):
    rogue_number = int(anvil.rpc("eth_blockNumber"), 16) + 1000
    node = await aiohttp_server(fake_node_app(_answering(rogue_number), head=rogue_number))
    settings = make_settings(
        upstreams=[f"http://127.0.0.1:{node.port}", anvil.url],
        GATEWAY_RPC__CACHE_ENABLED="false",
        **rpc_env,
    )
    client = await aiohttp_client(LaneTestServer(create_app(settings)))
    pool = client.app[POOL]
    await pool.poll_heads()
    assert pool.best_latest() < rogue_number
    assert pool.served_tip < rogue_number
    rpc = Rpc(client)
    for _ in range(20):
        assert int(await rpc.result("eth_blockNumber"), 16) < rogue_number
