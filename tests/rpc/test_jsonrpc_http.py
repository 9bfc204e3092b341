"""POST /rpc: JSON-RPC 2.0 exactly, the method policy, limits, against a real anvil."""

import io
import json

import orjson
import pytest

from gateway.app import create_app
from tests.helpers.lane import LaneTestServer
from tests.helpers.metrics import sample

pytestmark = pytest.mark.integration


async def test_single_call_passes_through(gateway_rpc, anvil):
    reply = await gateway_rpc.call("eth_chainId")
    assert reply == {"jsonrpc": "2.0", "id": reply["id"], "result": "0x7a69"}
    assert await gateway_rpc.result("eth_blockNumber") == anvil.rpc("eth_blockNumber")


@pytest.mark.parametrize("call_id", ["abc", 0, -7, 1.5, None, "", 2**60])
async def test_ids_are_echoed_unchanged(gateway_rpc, call_id):
    response = await gateway_rpc.post({"jsonrpc": "2.0", "id": call_id, "method": "eth_chainId"})
    reply = await response.json()
    assert reply["id"] == call_id
    assert type(reply["id"]) is type(call_id)


BIG_IDS = [1.5, -3.25, 2**63, 2**64 + 1, -(2**70), 10**30]


@pytest.mark.parametrize("call_id", BIG_IDS)
async def test_ids_a_node_may_refuse_reach_it_and_come_back_exact(gateway_rpc, call_id):
    """Fractions and integers beyond 64 bits are JSON-RPC ids too: anvil refuses them, so
    the node sees a string copy; the client gets its own id back, digit for digit."""
    body = json.dumps({"jsonrpc": "2.0", "id": call_id, "method": "eth_blockNumber"})
    response = await gateway_rpc.client.post(
        "/rpc", data=body, headers={"Content-Type": "application/json"}
    )
    reply = json.loads(await response.read())
    assert "result" in reply, reply
    assert reply["id"] == call_id
    assert type(reply["id"]) is type(call_id)


async def test_a_batch_keeps_each_big_id_apart(gateway_rpc):
    calls = [
        {"jsonrpc": "2.0", "id": call_id, "method": "eth_blockNumber"}
        for call_id in [10**30, 10**30 + 1, 2**64, "x"]
    ]
    calls.append({"jsonrpc": "2.0", "id": 10**30 + 2, "method": "admin_peers"})
    response = await gateway_rpc.client.post(
        "/rpc", data=json.dumps(calls), headers={"Content-Type": "application/json"}
    )
    replies = json.loads(await response.read())
    assert [reply["id"] for reply in replies] == [10**30, 10**30 + 1, 2**64, "x", 10**30 + 2]
    assert all("result" in reply for reply in replies[:4])
    assert replies[4]["error"]["code"] == -32601


@pytest.mark.parametrize(
    "calls",
    [
        {"jsonrpc": "2.0", "id": 1, "method": "eth_getBlockByNumber", "params": [10**30, False]},
        [
            {
                "jsonrpc": "2.0",
                "id": 1,
                "method": "eth_getBalance",
                "params": ["0x" + "00" * 20, 10**30],
            },
            {"jsonrpc": "2.0", "id": 2, "method": "eth_chainId"},
        ],
        {"jsonrpc": "2.0", "id": 3, "method": "eth_getLogs", "params": [{"fromBlock": -(10**30)}]},
        {"jsonrpc": "2.0", "id": 4, "method": "eth_call", "params": [{"value": 10**80}, "latest"]},
        {
            "jsonrpc": "2.0",
            "id": 5,
            "method": "eth_getLogs",
            "params": [{"fromBlock": "0x" + "f" * 64, "toBlock": "0x" + "f" * 70}],
        },
        {
            "jsonrpc": "2.0",
            "id": 6,
            "method": "eth_getLogs",
            "params": [{"toBlock": "0x" + "f" * 99}],
        },
        {
            "jsonrpc": "2.0",
            "id": 10**30,
            "method": "eth_getLogs",
            "params": [{"fromBlock": "0x0", "toBlock": "0x" + "f" * 40}],
        },
        {
            "jsonrpc": "2.0",
            "id": 7,
            "method": "eth_getBlockByNumber",
            "params": ["0x" + "f" * 99, True],
        },
        {"jsonrpc": "2.0", "id": 8, "method": "eth_getBlockByNumber", "params": ["-0x1", True]},
        {"jsonrpc": "2.0", "id": 9, "method": "eth_getBlockByHash", "params": [{"blockHash": 5}]},
    ],
)
async def test_huge_integer_params_get_a_json_rpc_answer(gateway_rpc, calls):
    """Quantities are hex strings in Ethereum's API; a hostile integer beyond 64 bits must
    still get a JSON-RPC reply (the node's error or the gateway's), never a 500."""
    response = await gateway_rpc.client.post(
        "/rpc", data=json.dumps(calls), headers={"Content-Type": "application/json"}
    )
    assert response.status == 200
    replies = json.loads(await response.read())
    for call, reply in zip(
        calls if isinstance(calls, list) else [calls],
        replies if isinstance(replies, list) else [replies],
        strict=True,
    ):
        assert reply["id"] == call["id"]
        assert "result" in reply or isinstance(reply["error"]["code"], int), reply


async def test_parse_error_has_null_id(gateway_rpc):
    response = await gateway_rpc.client.post(
        "/rpc", data=b'{"jsonrpc": "2.0", "id": 1, ', headers={"Content-Type": "application/json"}
    )
    assert response.status == 200
    assert await response.json() == {
        "jsonrpc": "2.0",
        "id": None,
        "error": {"code": -32700, "message": "parse error: request body is not valid JSON"},
    }


async def test_empty_batch_is_one_invalid_request(gateway_rpc):
    reply = await (await gateway_rpc.post([])).json()
    assert reply["error"]["code"] == -32600
    assert reply["id"] is None


async def test_batch_is_answered_in_order_with_per_item_errors(gateway_rpc):
    batch = [
        {"jsonrpc": "2.0", "id": "a", "method": "eth_chainId"},
        {"jsonrpc": "2.0", "id": "b", "method": "admin_peers"},
        {"jsonrpc": "2.0", "id": "c"},
        {"jsonrpc": "2.0", "method": "eth_chainId"},  # a notification: no reply
        1,
        {"jsonrpc": "1.0", "id": "d", "method": "eth_chainId"},
        {"jsonrpc": "2.0", "id": "e", "method": "eth_getBalance", "params": "nope"},
        {"jsonrpc": "2.0", "id": "f", "method": "net_version"},
    ]
    replies = await (await gateway_rpc.post(batch)).json()
    assert [r["id"] for r in replies] == ["a", "b", "c", None, "d", "e", "f"]
    assert replies[0]["result"] == "0x7a69"
    assert replies[1]["error"]["code"] == -32601
    assert [replies[i]["error"]["code"] for i in (2, 3, 4, 5)] == [-32600] * 4
    assert replies[6]["result"] == "31337"


async def test_batch_of_notifications_gets_no_body(gateway_rpc):
    response = await gateway_rpc.post([{"jsonrpc": "2.0", "method": "eth_chainId"}] * 3)
    assert response.status == 204


async def test_batch_over_the_limit(aiohttp_client, anvil, make_settings, rpc_env):
    from gateway.app import create_app

    settings = make_settings(upstreams=[anvil.url], GATEWAY_RPC__MAX_BATCH="3", **rpc_env)
    client = await aiohttp_client(LaneTestServer(create_app(settings)))
    calls = [{"jsonrpc": "2.0", "id": i, "method": "eth_chainId"} for i in range(4)]
    reply = await (await client.post("/rpc", json=calls)).json()
    assert reply["error"]["code"] == -32600
    assert "limit of 3" in reply["error"]["message"]


async def test_oversized_body_is_413(gateway_rpc):
    payload = orjson.dumps(
        {"jsonrpc": "2.0", "id": 1, "method": "eth_call", "params": ["x" * 2_000_000]}
    )
    response = await gateway_rpc.client.post(
        "/rpc", data=io.BytesIO(payload), headers={"Content-Type": "application/json"}
    )
    assert response.status == 413
    assert (await response.json())["error"]["code"] == "request.too_large"


async def test_a_body_just_over_a_small_limit_is_413(aiohttp_client, anvil, make_settings, rpc_env):
    """A body that arrives whole (taken from the buffer at once) is held to the limit too."""
    settings = make_settings(
        upstreams=[anvil.url], GATEWAY_SERVER__MAX_BODY_BYTES="2048", **rpc_env
    )
    client = await aiohttp_client(LaneTestServer(create_app(settings)))
    payload = orjson.dumps(
        {"jsonrpc": "2.0", "id": 1, "method": "eth_call", "params": ["x" * 3000]}
    )
    response = await client.post("/rpc", data=payload, headers={"Content-Type": "application/json"})
    assert response.status == 413
    assert (await response.json())["error"]["code"] == "request.too_large"
    fits = {"jsonrpc": "2.0", "id": 2, "method": "eth_chainId", "params": []}
    assert (await client.post("/rpc", json=fits)).status == 200


@pytest.mark.parametrize(
    "method",
    [
        "admin_peers",
        "debug_traceTransaction",
        "personal_unlockAccount",
        "miner_start",
        "txpool_content",
        "eth_sendTransaction",
        "eth_sign",
        "eth_signTypedData_v4",
        "eth_accounts",
        "anvil_mine",
        "evm_revert",
        "engine_newPayloadV3",
        "eth_newFilter",
        "made_upMethod",
    ],
)
async def test_dangerous_and_unknown_methods_are_refused(gateway_rpc, method):
    reply = await gateway_rpc.call(method, [])
    assert reply["error"]["code"] == -32601
    assert method in reply["error"]["message"]


async def test_subscriptions_need_a_websocket(gateway_rpc):
    reply = await gateway_rpc.call("eth_subscribe", ["newHeads"])
    assert reply["error"]["code"] == -32601
    assert "WebSocket" in reply["error"]["message"]


async def test_node_errors_pass_through(gateway_rpc):
    reply = await gateway_rpc.call("eth_getBalance", ["0xnot-an-address", "latest"])
    assert "error" in reply
    assert reply["error"]["code"] != -32601


async def test_requests_are_counted(gateway_rpc):
    labels = {"method": "eth_chainId", "outcome": "ok", "tier": "anonymous"}
    before = await gateway_rpc.client.get("/metrics")
    counted = sample(await before.text(), "gateway_rpc_requests_total", **labels) or 0.0
    await gateway_rpc.call("eth_chainId")
    await gateway_rpc.call("admin_peers")
    text = await (await gateway_rpc.client.get("/metrics")).text()
    assert sample(text, "gateway_rpc_requests_total", **labels) == counted + 1
    denied = {"method": "other", "outcome": "denied", "tier": "anonymous"}
    assert sample(text, "gateway_rpc_requests_total", **denied) == 1.0
