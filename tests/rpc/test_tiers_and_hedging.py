"""Caller tiers (anonymous vs signed-in) and hedged reads."""

import asyncio

import pytest
from aiohttp import web

from gateway.app import create_app
from gateway.rpc.context import POOL
from tests.helpers.fake_node import fake_node_app
from tests.helpers.lane import LaneTestServer
from tests.helpers.metrics import sample
from tests.identity.conftest import SignInFlow
from tests.rpc.conftest import Rpc

pytestmark = pytest.mark.integration


async def test_signed_in_callers_get_their_own_policy(
    aiohttp_client, anvil, make_settings, rpc_env
):
    settings = make_settings(
        upstreams=[anvil.url],
        GATEWAY_SIWE_DOMAINS="app.example",
        GATEWAY_CHAIN_ID="31337",
        GATEWAY_RPC__ANONYMOUS__ALLOW='["eth_chainId"]',
        **rpc_env,
    )
    client = await aiohttp_client(LaneTestServer(create_app(settings)))
    rpc = Rpc(client)
    assert (await rpc.call("eth_blockNumber"))["error"]["code"] == -32601
    from eth_account import Account

    token = (await SignInFlow(client).sign_in(Account.create()))["token"]
    reply = await rpc.call("eth_blockNumber", headers={"Authorization": f"Bearer {token}"})
    assert "result" in reply
    text = await (await client.get("/metrics")).text()
    signed_in = {"method": "eth_blockNumber", "outcome": "ok", "tier": "signed_in"}
    assert sample(text, "gateway_rpc_requests_total", **signed_in) == 1.0
    bad = await rpc.post(
        {"jsonrpc": "2.0", "id": 1, "method": "eth_chainId"}, {"Authorization": "Bearer nope"}
    )
    assert bad.status == 401


@pytest.fixture(name="slow_reader_node")
async def _slow_reader_node(aiohttp_server):
    """Answers head polls at once and every read after 2 s: slowness anvil will not fake."""

    async def on_call(_request: web.Request, body: dict) -> web.Response:
        if body["method"] != "eth_chainId":
            await asyncio.sleep(2)
        return web.json_response({"jsonrpc": "2.0", "id": body["id"], "result": "0x7a69"})

    return await aiohttp_server(fake_node_app(on_call))


@pytest.fixture(name="hedging_client")
async def _hedging_client(aiohttp_client, slow_reader_node, fresh_anvil, make_settings, rpc_env):
    """A gateway whose first choice is the slow node, usually answering in 20 ms."""
    settings = make_settings(
        upstreams=[f"http://127.0.0.1:{slow_reader_node.port}", fresh_anvil.url],
        GATEWAY_RPC__HEDGE_READS="true",
        GATEWAY_RPC__CACHE_ENABLED="false",
        GATEWAY_RPC__MAX_LAG_BLOCKS="1000",
        **rpc_env,
    )
    client = await aiohttp_client(LaneTestServer(create_app(settings)))
    slow = next(u for u in client.app[POOL].upstreams if str(slow_reader_node.port) in u.url)
    slow.weight = 1_000_000  # tried first
    slow.latencies.extend([0.02] * 50)  # its usual p95: 20 ms
    return client


async def test_slow_read_is_hedged_to_another_node(hedging_client, fresh_anvil):
    reply = await Rpc(hedging_client).call("eth_getBalance", ["0x" + "00" * 20, "latest"])
    assert reply["result"] == "0x0"  # anvil's answer (the slow node would say 0x7a69)
    text = await (await hedging_client.get("/metrics")).text()
    assert sample(text, "gateway_rpc_hedges_total", upstream=f"127.0.0.1:{fresh_anvil.port}") == 1.0


async def test_the_losing_hedge_is_cancelled_and_awaited(hedging_client):
    """Both attempts have ended when the hedged read returns: none is left on the loop."""
    pool = hedging_client.app[POOL]
    attempts = []
    still_running = []
    attempt, hedged = pool._attempt, pool._hedged

    async def tracked_attempt(upstream, body, method):
        attempts.append(asyncio.current_task())
        return await attempt(upstream, body, method)

    async def checked_hedged(*args):
        result = await hedged(*args)
        still_running.extend(task for task in attempts if not task.done())  # no loop turn since
        return result

    pool._attempt, pool._hedged = tracked_attempt, checked_hedged
    reply = await Rpc(hedging_client).call("eth_getBalance", ["0x" + "00" * 20, "latest"])
    assert reply["result"] == "0x0"
    assert len(attempts) == 2
    assert still_running == []
    assert attempts[0].cancelled()  # the slow node's attempt lost and was cancelled
