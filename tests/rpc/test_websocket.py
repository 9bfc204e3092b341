"""JSON-RPC over WebSocket with subscriptions, against real anvils' WebSocket endpoints."""

import asyncio
import json

import aiohttp
import orjson
import pytest
from web3 import AsyncWeb3, WebSocketProvider

from gateway.app import create_app
from gateway.rpc.routes import HUB
from tests.helpers.lane import LaneTestServer
from tests.helpers.metrics import sample
from tests.helpers.waiting import eventually

pytestmark = pytest.mark.integration


@pytest.fixture(name="ws_gateway")
async def _ws_gateway(aiohttp_client, fresh_anvil, make_settings, rpc_env):
    settings = make_settings(upstreams=[f"{fresh_anvil.url}|{fresh_anvil.ws_url}"], **rpc_env)
    return await aiohttp_client(LaneTestServer(create_app(settings)))


async def _next(ws, timeout=10):
    message = await ws.receive(timeout=timeout)
    assert message.type == aiohttp.WSMsgType.TEXT, message
    return orjson.loads(message.data)


async def _subscribe(ws, kind="newHeads", *params, call_id=1):
    await ws.send_str(
        orjson.dumps(
            {"jsonrpc": "2.0", "id": call_id, "method": "eth_subscribe", "params": [kind, *params]}
        ).decode()
    )
    reply = await _next(ws)
    assert "result" in reply, reply
    return reply["result"]


async def test_web3_websocket_provider_reads_and_subscribes(ws_gateway, fresh_anvil):
    url = str(ws_gateway.make_url("/rpc")).replace("http://", "ws://")
    async with AsyncWeb3(WebSocketProvider(url)) as w3:
        assert await w3.eth.chain_id == 31337
        subscription = await w3.eth.subscribe("newHeads")
        fresh_anvil.rpc("evm_mine")
        async for message in w3.socket.process_subscriptions():
            assert message["subscription"] == subscription
            assert message["result"]["number"] == 1
            break


async def test_two_clients_share_one_upstream_subscription(ws_gateway, fresh_anvil):
    async with ws_gateway.ws_connect("/rpc") as first, ws_gateway.ws_connect("/rpc") as second:
        id_one = await _subscribe(first)
        id_two = await _subscribe(second)
        assert id_one != id_two
        assert len(ws_gateway.app[HUB].client_feeds()) == 1
        fresh_anvil.rpc("evm_mine")
        got_one, got_two = await _next(first), await _next(second)
        assert got_one["params"]["subscription"] == id_one
        assert got_two["params"]["subscription"] == id_two
        assert got_one["params"]["result"] == got_two["params"]["result"]
        text = await (await ws_gateway.get("/metrics")).text()
        assert "gateway_ws_connections 2.0" in text
        assert sample(text, "gateway_ws_subscriptions", type="newHeads") == 2.0


async def test_logs_subscription_with_a_filter(ws_gateway, fresh_anvil):
    from eth_abi import encode
    from eth_account import Account
    from eth_utils import function_signature_to_4byte_selector

    from tests.helpers.chain import deploy, transact

    factory = deploy(fresh_anvil, "TestWalletFactory")
    async with ws_gateway.ws_connect("/rpc") as ws:
        subscription = await _subscribe(ws, "logs", {"address": factory})
        selector = function_signature_to_4byte_selector("deploy(address,bytes32)")
        transact(
            fresh_anvil,
            factory,
            selector + encode(["address", "bytes32"], [Account.create().address, b"\x01" * 32]),
        )
        event = await _next(ws)
        assert event["params"]["subscription"] == subscription
        assert event["params"]["result"]["address"].lower() == factory.lower()


async def test_calls_policy_and_unsubscribe_over_websocket(ws_gateway):
    async with ws_gateway.ws_connect("/rpc") as ws:
        await ws.send_str('{"jsonrpc":"2.0","id":"x","method":"eth_chainId"}')
        assert (await _next(ws)) == {"jsonrpc": "2.0", "id": "x", "result": "0x7a69"}
        await ws.send_str(
            '{"jsonrpc":"2.0","id":2,"method":"debug_traceBlockByNumber","params":[]}'
        )
        assert (await _next(ws))["error"]["code"] == -32601
        await ws.send_str("{oops")
        assert (await _next(ws))["error"]["code"] == -32700
        await ws.send_str('{"jsonrpc":"2.0","id":3,"method":"eth_subscribe","params":["bogus"]}')
        assert (await _next(ws))["error"]["code"] == -32602
        subscription = await _subscribe(ws, call_id=4)
        await ws.send_str(
            orjson.dumps(
                {"jsonrpc": "2.0", "id": 5, "method": "eth_unsubscribe", "params": [subscription]}
            ).decode()
        )
        assert (await _next(ws))["result"] is True
        await ws.send_str(
            orjson.dumps(
                {"jsonrpc": "2.0", "id": 6, "method": "eth_unsubscribe", "params": [subscription]}
            ).decode()
        )
        assert (await _next(ws))["result"] is False
        assert ws_gateway.app[HUB].client_feeds() == []


async def test_big_and_fractional_ids_come_back_exact_over_websocket(ws_gateway):
    async with ws_gateway.ws_connect("/rpc") as ws:
        for call_id in [10**30, 1.5]:
            await ws.send_str(
                json.dumps({"jsonrpc": "2.0", "id": call_id, "method": "eth_blockNumber"})
            )
            message = await ws.receive(timeout=10)
            reply = json.loads(message.data)
            assert "result" in reply, reply
            assert reply["id"] == call_id
            assert type(reply["id"]) is type(call_id)


@pytest.mark.parametrize(
    "params",
    [
        ["logs", {"address": 5}],
        ["logs", {"topics": "not a list"}],
        ["logs", {"fromBlock": 10**30}],
        ["newHeads", {"unexpected": True}],
    ],
)
async def test_a_subscription_the_node_refuses_is_an_error_not_a_retry_loop(ws_gateway, params):
    """Bad parameters are the caller's fault: the node's reason comes back at once and no
    feed stays behind reconnecting to the node."""
    async with ws_gateway.ws_connect("/rpc") as ws:
        await ws.send_str(
            json.dumps({"jsonrpc": "2.0", "id": 7, "method": "eth_subscribe", "params": params})
        )
        reply = json.loads((await ws.receive(timeout=10)).data)
        assert reply["id"] == 7
        assert reply["error"]["code"] == -32602, reply
        assert "refused" in reply["error"]["message"]
        await eventually(lambda: not ws_gateway.app[HUB].client_feeds(), what="no feed left")
        await ws.send_str('{"jsonrpc":"2.0","id":8,"method":"eth_chainId"}')
        assert (await _next(ws))["result"] == "0x7a69"  # the connection is fine


async def test_a_message_over_the_body_cap_closes_the_connection(
    aiohttp_client, fresh_anvil, make_settings, rpc_env
):
    settings = make_settings(
        upstreams=[f"{fresh_anvil.url}|{fresh_anvil.ws_url}"],
        GATEWAY_SERVER__MAX_BODY_BYTES="4096",
        **rpc_env,
    )
    client = await aiohttp_client(LaneTestServer(create_app(settings)))
    async with client.ws_connect("/rpc") as ws:
        await ws.send_str('{"jsonrpc":"2.0","id":1,"method":"eth_chainId"}')
        assert (await _next(ws))["result"] == "0x7a69"
        padding = "a" * 5000
        await ws.send_str(
            f'{{"jsonrpc":"2.0","id":2,"method":"eth_chainId","params":["{padding}"]}}'
        )
        message = await ws.receive(timeout=10)
        assert message.type in {aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED}
        assert ws.close_code == aiohttp.WSCloseCode.MESSAGE_TOO_BIG


async def test_distinct_upstream_subscriptions_are_capped_for_the_gateway(
    aiohttp_client, fresh_anvil, make_settings, rpc_env
):
    """Each distinct filter is one WebSocket to a node; identical ones are shared."""
    settings = make_settings(
        upstreams=[f"{fresh_anvil.url}|{fresh_anvil.ws_url}"],
        GATEWAY_RPC__WS_MAX_UPSTREAM_SUBSCRIPTIONS="3",
        GATEWAY_RPC__PUSH_HEADS="false",
        **rpc_env,
    )
    client = await aiohttp_client(LaneTestServer(create_app(settings)))
    async with client.ws_connect("/rpc") as ws:
        for index in range(3):
            topic = "0x" + f"{index:064x}"
            await _subscribe(ws, "logs", {"topics": [topic]}, call_id=index)
        await _subscribe(ws, "logs", {"topics": ["0x" + f"{0:064x}"]}, call_id=10)  # shared
        await ws.send_str(
            json.dumps(
                {
                    "jsonrpc": "2.0",
                    "id": 11,
                    "method": "eth_subscribe",
                    "params": ["logs", {"topics": ["0x" + f"{9:064x}"]}],
                }
            )
        )
        reply = await _next(ws)
        assert reply["error"]["code"] == -32005
        assert len(client.app[HUB].feeds) == 3


async def test_subscription_cap(aiohttp_client, fresh_anvil, make_settings, rpc_env):
    settings = make_settings(
        upstreams=[f"{fresh_anvil.url}|{fresh_anvil.ws_url}"],
        GATEWAY_RPC__WS_MAX_SUBSCRIPTIONS="2",
        **rpc_env,
    )
    client = await aiohttp_client(LaneTestServer(create_app(settings)))
    async with client.ws_connect("/rpc") as ws:
        await _subscribe(ws, call_id=1)
        await _subscribe(ws, call_id=2)
        await ws.send_str('{"jsonrpc":"2.0","id":3,"method":"eth_subscribe","params":["newHeads"]}')
        assert (await _next(ws))["error"]["code"] == -32005


async def test_subscription_moves_to_another_node(
    aiohttp_client, fresh_anvil, second_anvil, make_settings, rpc_env
):
    settings = make_settings(
        upstreams=[
            f"{fresh_anvil.url}|{fresh_anvil.ws_url}",
            f"{second_anvil.url}|{second_anvil.ws_url}",
        ],
        GATEWAY_RPC__MAX_LAG_BLOCKS="1000",
        **rpc_env,
    )
    client = await aiohttp_client(LaneTestServer(create_app(settings)))
    async with client.ws_connect("/rpc") as ws:
        subscription = await _subscribe(ws)
        hub = client.app[HUB]
        feed = await eventually(  # the feed is subscribed upstream
            lambda: next((f for f in hub.client_feeds() if f.upstream), None), what="the feed"
        )
        serving, other = (
            (fresh_anvil, second_anvil)
            if str(fresh_anvil.port) in feed.upstream
            else (second_anvil, fresh_anvil)
        )
        serving.stop()
        await eventually(lambda: str(other.port) in feed.upstream, what="the other node")
        other.rpc("evm_mine")
        message = await _next(ws)
        assert message["params"]["subscription"] == subscription  # the client's id is kept


async def test_slow_reader_is_disconnected(
    aiohttp_client, fresh_anvil, make_settings, rpc_env, logs
):
    settings = make_settings(
        upstreams=[f"{fresh_anvil.url}|{fresh_anvil.ws_url}"],
        GATEWAY_RPC__WS_SEND_QUEUE="8",
        **rpc_env,
    )
    client = await aiohttp_client(LaneTestServer(create_app(settings)))
    hub = client.app[HUB]
    async with client.ws_connect("/rpc", max_msg_size=0) as slow, client.ws_connect("/rpc") as fast:
        for call_id in range(20):  # twenty copies of every header for the one that never reads
            await _subscribe(slow, call_id=call_id)
        fast_id = await _subscribe(fast, call_id=99)
        received = 0

        async def drain_fast():
            nonlocal received
            while True:
                message = await fast.receive()
                if message.type != aiohttp.WSMsgType.TEXT:
                    return
                received += 1

        reader = asyncio.create_task(drain_fast())
        for _ in range(100):  # thousands of headers, while `slow` reads nothing
            fresh_anvil.rpc("anvil_mine", ["0xc8"])
            await asyncio.sleep(0.05)
            feed = next(iter(hub.client_feeds()), None)
            assert feed is not None, f"every client was dropped (fast one got {received})"
            if len(hub.clients(feed)) == 1:
                break
        feed = hub.client_feeds()[0]
        assert hub.clients(feed) == [fast_id]  # the slow one was dropped, the fast one kept
        closing = None
        while closing is None or closing.type == aiohttp.WSMsgType.TEXT:
            closing = await slow.receive(timeout=10)
        assert closing.type in {
            aiohttp.WSMsgType.CLOSE,
            aiohttp.WSMsgType.CLOSED,
            aiohttp.WSMsgType.CLOSING,
        }
        # 1008 when the close frame gets through the full buffers, else the socket is cut
        assert slow.close_code in {1008, 1006}
        reader.cancel()
        assert received > 0
        assert logs.events("websocket client too slow: disconnecting")
