"""Every JSON-RPC HTTP reply says how it was made: X-Gateway-Cache, -Upstream, -Attempts,
-Block and Server-Timing, true of what happened (checked on the nodes' own counts), on both
transports, readable by a page of an allowed origin, and off with rpc.explain_headers."""

from __future__ import annotations

import asyncio
import re
from collections import Counter

import pytest
from aiohttp import web

from gateway.app import create_app
from tests.helpers.fake_node import fake_node_app
from tests.helpers.lane import LaneTestServer

pytestmark = pytest.mark.integration

CHAIN_ID = {"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []}
BALANCE = {
    "jsonrpc": "2.0",
    "id": 2,
    "method": "eth_getBalance",
    "params": ["0x" + "ab" * 20, "latest"],
}
TIMING = re.compile(r"gw;dur=\d+\.\d{3}(, upstream;dur=\d+\.\d{3})?")


class CountingNode:
    def __init__(self, delay_s: float = 0.0) -> None:
        self.calls: Counter[str] = Counter()
        self.delay_s = delay_s

    async def on_call(self, _request: web.Request, body: dict) -> web.Response:
        self.calls[body["method"]] += 1
        await asyncio.sleep(self.delay_s)
        result = "0x7a69" if body["method"] == "eth_chainId" else "0x2a"
        return web.json_response({"jsonrpc": "2.0", "id": body["id"], "result": result})


@pytest.fixture(name="nodes")
async def _nodes(aiohttp_server):
    found = []
    for _ in range(2):
        node = CountingNode()
        server = await aiohttp_server(fake_node_app(node.on_call))
        node.url = f"http://127.0.0.1:{server.port}"
        node.name = f"127.0.0.1:{server.port}"
        found.append(node)
    return found


@pytest.mark.parametrize("lane", [True, False], ids=["fast-path", "aiohttp"])
async def test_hit_miss_and_bypass_are_told_apart(
    lane, aiohttp_client, make_settings, anvil, rpc_env, spans, logs
):
    settings = make_settings(
        upstreams=[anvil.url], GATEWAY_SERVER__LANE=str(lane).lower(), **rpc_env
    )
    client = await aiohttp_client(LaneTestServer(create_app(settings, span_exporters=[spans])))
    first = await client.post("/rpc", json=CHAIN_ID)
    second = await client.post("/rpc", json=CHAIN_ID)
    assert first.headers["X-Gateway-Cache"] == "miss"
    assert first.headers["X-Gateway-Upstream"] == anvil.url.removeprefix("http://")
    assert first.headers["X-Gateway-Attempts"] == "1"
    assert TIMING.fullmatch(first.headers["Server-Timing"])
    assert "upstream;dur=" in first.headers["Server-Timing"]
    assert second.headers["X-Gateway-Cache"] == "hit"
    assert "X-Gateway-Upstream" not in second.headers
    assert "upstream;dur=" not in second.headers["Server-Timing"]
    estimate = {
        "jsonrpc": "2.0",
        "id": 3,
        "method": "eth_estimateGas",
        "params": [{"to": "0x" + "11" * 20}],
    }
    assert (await client.post("/rpc", json=estimate)).headers["X-Gateway-Cache"] == "bypass"
    latest = {
        "jsonrpc": "2.0",
        "id": 4,
        "method": "eth_getBlockByNumber",
        "params": ["latest", False],
    }
    reply = await client.post("/rpc", json=latest)
    block = int((await reply.json())["result"]["number"], 16)
    assert reply.headers["X-Gateway-Block"] == str(block)
    batch = await client.post("/rpc", json=[CHAIN_ID, BALANCE | {"id": 9}])
    assert batch.headers["X-Gateway-Cache"] == "hit=1, miss=1"

    # The same facts on the access line and the server span of each answer.
    lines = [line for line in logs.events("request") if line["route"] == "/rpc"]
    assert [line["cache"] for line in lines] == ["miss", "hit", "bypass", "miss", "hit=1, miss=1"]
    assert lines[0]["upstream"] == first.headers["X-Gateway-Upstream"]
    assert lines[0]["attempts"] == "1"
    assert lines[3]["block"] == str(block)
    assert "upstream" not in lines[1]
    served = [s for s in spans.get_finished_spans() if s.name == "POST /rpc"]
    assert [s.attributes["gateway.cache"] for s in served] == [line["cache"] for line in lines]
    assert served[0].attributes["gateway.upstream"] == first.headers["X-Gateway-Upstream"]


async def test_the_upstream_named_is_the_one_that_answered(
    aiohttp_client, make_settings, rpc_env, nodes
):
    settings = make_settings(
        upstreams=[node.url for node in nodes],
        GATEWAY_RPC__CACHE_ENABLED="false",
        GATEWAY_RPC__PUSH_HEADS="false",
        GATEWAY_RPC__HEDGE_READS="false",
        **rpc_env,
    )
    client = await aiohttp_client(LaneTestServer(create_app(settings)))
    by_name = {node.name: node for node in nodes}
    for _ in range(20):
        before = {name: node.calls["eth_getBalance"] for name, node in by_name.items()}
        reply = await client.post("/rpc", json=BALANCE)
        named = reply.headers["X-Gateway-Upstream"]
        after = {name: node.calls["eth_getBalance"] for name, node in by_name.items()}
        assert after[named] == before[named] + 1
        assert sum(after.values()) == sum(before.values()) + 1


async def test_a_coalesced_call_says_so(aiohttp_client, make_settings, rpc_env, aiohttp_server):
    node = CountingNode(delay_s=0.3)
    server = await aiohttp_server(fake_node_app(node.on_call))
    settings = make_settings(
        upstreams=[f"http://127.0.0.1:{server.port}"],
        GATEWAY_RPC__CACHE_ENABLED="false",
        GATEWAY_RPC__PUSH_HEADS="false",
        **rpc_env,
    )
    client = await aiohttp_client(LaneTestServer(create_app(settings)))
    replies = await asyncio.gather(*(client.post("/rpc", json=BALANCE) for _ in range(5)))
    kinds = Counter(reply.headers["X-Gateway-Cache"] for reply in replies)
    assert node.calls["eth_getBalance"] == 1
    assert kinds == {"bypass": 1, "coalesced": 4}


async def test_a_page_of_an_allowed_origin_may_read_them(
    aiohttp_client, make_settings, anvil, rpc_env
):
    settings = make_settings(
        upstreams=[anvil.url], GATEWAY_SERVER__CORS_ORIGINS="https://app.example", **rpc_env
    )
    client = await aiohttp_client(LaneTestServer(create_app(settings)))
    reply = await client.post("/rpc", json=CHAIN_ID, headers={"Origin": "https://app.example"})
    exposed = {name.strip() for name in reply.headers["Access-Control-Expose-Headers"].split(",")}
    assert {
        "X-Gateway-Cache",
        "X-Gateway-Upstream",
        "X-Gateway-Attempts",
        "Server-Timing",
    } <= exposed
    assert reply.headers["X-Gateway-Cache"] in {"hit", "miss"}


async def test_they_can_be_turned_off(aiohttp_client, make_settings, anvil, rpc_env):
    settings = make_settings(upstreams=[anvil.url], GATEWAY_RPC__EXPLAIN_HEADERS="false", **rpc_env)
    client = await aiohttp_client(LaneTestServer(create_app(settings)))
    for _ in range(2):
        reply = await client.post("/rpc", json=CHAIN_ID)
        assert not [name for name in reply.headers if name.startswith("X-Gateway-")]
        assert "Server-Timing" not in reply.headers
