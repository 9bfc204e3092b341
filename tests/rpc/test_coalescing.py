"""Request coalescing: identical reads in flight together make one node call."""

import asyncio
from collections import Counter

import pytest
from aiohttp import web

from gateway.app import create_app
from gateway.rpc.coalesce import Coalescer
from tests.helpers.fake_node import fake_node_app
from tests.helpers.lane import LaneTestServer
from tests.helpers.metrics import sample
from tests.helpers.waiting import eventually

pytestmark = pytest.mark.integration

BALANCE = ["0x" + "ab" * 20, "latest"]


class SlowNode:
    """Takes 200 ms per call and counts calls by method; answers an error when told."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.fail: str | None = None  # "rpc" (a JSON-RPC error) or "http" (a 502)

    async def on_call(self, _request: web.Request, body: dict) -> web.Response:
        self.calls[body["method"]] += 1
        await asyncio.sleep(0.2)
        if self.fail == "http":
            return web.Response(status=502, text="bad gateway")
        if self.fail == "rpc":
            error = {"code": -32000, "message": "header not found"}
            return web.json_response({"jsonrpc": "2.0", "id": body["id"], "error": error})
        result = "0x7a69" if body["method"] == "eth_chainId" else "0x2a"
        return web.json_response({"jsonrpc": "2.0", "id": body["id"], "result": result})


@pytest.fixture(name="slow_node")
async def _slow_node(aiohttp_server):
    node = SlowNode()
    server = await aiohttp_server(fake_node_app(node.on_call))
    node.url = f"http://127.0.0.1:{server.port}"
    return node


@pytest.fixture(name="make_client")
def _make_client(aiohttp_client, make_settings, rpc_env, slow_node):
    async def make(**env):
        settings = make_settings(
            upstreams=[slow_node.url],
            GATEWAY_RPC__CACHE_ENABLED="false",
            GATEWAY_RPC__PUSH_HEADS="false",
            **{**rpc_env, **env},
        )
        return await aiohttp_client(LaneTestServer(create_app(settings)))

    return make


async def _concurrent(client, method, params, count=50):
    async def one(call_id):
        payload = {"jsonrpc": "2.0", "id": call_id, "method": method, "params": params}
        response = await client.post("/rpc", json=payload)
        assert response.status == 200
        return await response.json()

    return await asyncio.gather(*(one(f"call-{i}") for i in range(count)))


async def _coalesced_count(client, method):
    text = await (await client.get("/metrics")).text()
    return sample(text, "gateway_rpc_coalesced_total", method=method) or 0.0


async def test_identical_reads_make_one_node_call(make_client, slow_node):
    client = await make_client()
    before = await _coalesced_count(client, "eth_getBalance")
    replies = await _concurrent(client, "eth_getBalance", BALANCE)
    assert slow_node.calls["eth_getBalance"] == 1
    assert [reply["id"] for reply in replies] == [f"call-{i}" for i in range(50)]
    assert all(reply["result"] == "0x2a" for reply in replies)
    assert await _coalesced_count(client, "eth_getBalance") == before + 49


async def test_different_params_are_not_coalesced(make_client, slow_node):
    client = await make_client()
    await asyncio.gather(
        _concurrent(client, "eth_getBalance", BALANCE, count=5),
        _concurrent(client, "eth_getBalance", ["0x" + "cd" * 20, "latest"], count=5),
    )
    assert slow_node.calls["eth_getBalance"] == 2


@pytest.mark.parametrize("fail", ["rpc", "http"])
async def test_a_node_error_reaches_every_waiting_caller(make_client, slow_node, fail):
    client = await make_client()
    slow_node.fail = fail
    replies = await _concurrent(client, "eth_getBalance", BALANCE)
    assert slow_node.calls["eth_getBalance"] == 1
    assert [reply["id"] for reply in replies] == [f"call-{i}" for i in range(50)]
    codes = {reply["error"]["code"] for reply in replies}
    assert codes == ({-32000} if fail == "rpc" else {-32002})
    slow_node.fail = None  # and the next call is a new one, not the old error
    (reply,) = await _concurrent(client, "eth_getBalance", BALANCE, count=1)
    assert reply["result"] == "0x2a"
    assert slow_node.calls["eth_getBalance"] == 2


async def test_transactions_are_never_coalesced(make_client, slow_node):
    client = await make_client(GATEWAY_RPC__ANONYMOUS__ALLOW='["eth_sendRawTransaction"]')
    await _concurrent(client, "eth_sendRawTransaction", ["0x02f8"], count=5)
    assert slow_node.calls["eth_sendRawTransaction"] == 5
    assert await _coalesced_count(client, "eth_sendRawTransaction") == 0


async def test_coalescing_can_be_turned_off(make_client, slow_node):
    client = await make_client(GATEWAY_RPC__COALESCE="false")
    await _concurrent(client, "eth_getBalance", BALANCE, count=10)
    assert slow_node.calls["eth_getBalance"] == 10


async def test_a_cancelled_leader_hands_over_to_a_waiter():
    coalescer: Coalescer[str] = Coalescer()
    calls = []
    release = asyncio.Event()

    async def fetch():
        calls.append(1)
        await release.wait()
        return f"answer {len(calls)}"

    leader = asyncio.create_task(coalescer.run("k", fetch))
    await eventually(lambda: calls, what="the leader's call")
    waiters = [asyncio.create_task(coalescer.run("k", fetch)) for _ in range(3)]
    await eventually(lambda: coalescer._flights["k"].future is not None, what="waiters")
    leader.cancel()
    await eventually(lambda: len(calls) == 2, what="a waiter's own call")
    release.set()
    outcomes = await asyncio.gather(*waiters)
    assert len(calls) == 2  # one waiter led a new call; the other two shared it
    assert sorted(shared for _, shared in outcomes) == [False, True, True]
    assert {answer for answer, _ in outcomes} == {"answer 2"}
    assert len(coalescer) == 0
    with pytest.raises(asyncio.CancelledError):
        await leader


async def test_a_cancelled_waiter_leaves_the_call_alone():
    coalescer: Coalescer[str] = Coalescer()
    release = asyncio.Event()

    async def fetch():
        await release.wait()
        return "answer"

    leader = asyncio.create_task(coalescer.run("k", fetch))
    await eventually(lambda: len(coalescer) == 1, what="the leader's call")
    waiter = asyncio.create_task(coalescer.run("k", fetch))
    await eventually(lambda: coalescer._flights["k"].future is not None, what="the waiter")
    waiter.cancel()
    await eventually(waiter.done, what="the waiter's end")
    release.set()
    assert await leader == ("answer", False)
    with pytest.raises(asyncio.CancelledError):
        await waiter
