"""Subscriptions through a gateway whose nodes are HTTP only: newHeads and logs by polling."""

import aiohttp
import orjson
import pytest

from gateway.app import create_app
from gateway.rpc.polled import ChainFollower
from gateway.rpc.routes import HUB
from tests.helpers.lane import LaneTestServer

pytestmark = pytest.mark.integration


@pytest.fixture(name="http_only_gateway")
async def _http_only_gateway(aiohttp_client, fresh_anvil, make_settings, rpc_env):
    settings = make_settings(
        upstreams=[fresh_anvil.url],  # no ws:// URL: nothing is pushed
        GATEWAY_RPC__SUBSCRIPTION_POLL_S="0.2",
        **rpc_env,
    )
    return await aiohttp_client(LaneTestServer(create_app(settings)))


async def _next(ws, timeout=10):
    message = await ws.receive(timeout=timeout)
    assert message.type == aiohttp.WSMsgType.TEXT, message
    return orjson.loads(message.data)


async def _subscribe(ws, kind, *params):
    payload = {"jsonrpc": "2.0", "id": 1, "method": "eth_subscribe", "params": [kind, *params]}
    await ws.send_str(orjson.dumps(payload).decode())
    return await _next(ws)


async def test_every_block_arrives_once_in_order(http_only_gateway, fresh_anvil):
    async with http_only_gateway.ws_connect("/rpc") as ws:
        reply = await _subscribe(ws, "newHeads")
        subscription = reply["result"]
        start = int(fresh_anvil.rpc("eth_blockNumber"), 16)
        fresh_anvil.rpc("anvil_mine", ["0xa"])  # 10 blocks at once, between two polls
        numbers, hashes = [], []
        while len(numbers) < 10:
            event = await _next(ws)
            assert event["method"] == "eth_subscription"
            assert event["params"]["subscription"] == subscription
            header = event["params"]["result"]
            numbers.append(int(header["number"], 16))
            hashes.append(header["hash"])
            assert "transactions" not in header  # a header, as a node's newHeads sends
            assert {"parentHash", "stateRoot", "timestamp", "baseFeePerGas"} <= header.keys()
        assert numbers == list(range(start + 1, start + 11))
        for number, block_hash in zip(numbers, hashes, strict=True):
            assert (
                fresh_anvil.rpc("eth_getBlockByNumber", [hex(number), False])["hash"] == block_hash
            )
        for _ in range(10):  # ten blocks in quick succession, one call each
            fresh_anvil.rpc("evm_mine")
        following = [int((await _next(ws))["params"]["result"]["number"], 16) for _ in range(10)]
        assert following == list(range(start + 11, start + 21))


async def test_a_logs_subscription_gets_matching_events(http_only_gateway, fresh_anvil):
    from eth_abi import encode
    from eth_account import Account
    from eth_utils import function_signature_to_4byte_selector

    from tests.helpers.chain import deploy, transact

    factory = deploy(fresh_anvil, "TestWalletFactory")
    other = deploy(fresh_anvil, "TestWalletFactory")
    selector = function_signature_to_4byte_selector("deploy(address,bytes32)")
    call = selector + encode(["address", "bytes32"], [Account.create().address, b"\x01" * 32])
    async with http_only_gateway.ws_connect("/rpc") as ws:
        subscription = (await _subscribe(ws, "logs", {"address": factory}))["result"]
        transact(fresh_anvil, other, call)  # not this filter's address
        receipt = transact(fresh_anvil, factory, call)
        event = await _next(ws)
        assert event["params"]["subscription"] == subscription
        found = event["params"]["result"]
        assert found["address"].lower() == factory.lower()
        assert found["transactionHash"] == receipt["transactionHash"]
        assert found["removed"] is False


async def test_pending_transactions_need_a_websocket_node(http_only_gateway):
    async with http_only_gateway.ws_connect("/rpc") as ws:
        reply = await _subscribe(ws, "newPendingTransactions")
        assert reply["error"]["code"] == -32004
        assert "WebSocket URL" in reply["error"]["message"]
        assert not http_only_gateway.app[HUB].feeds
        bad = await _subscribe(ws, "logs", "not a filter")
        assert bad["error"]["code"] == -32602


async def test_the_poller_stops_with_the_last_subscriber(http_only_gateway):
    hub = http_only_gateway.app[HUB]
    async with http_only_gateway.ws_connect("/rpc") as ws:
        subscription = (await _subscribe(ws, "newHeads"))["result"]
        assert hub.follower.heads
        payload = {"jsonrpc": "2.0", "id": 2, "method": "eth_unsubscribe", "params": [subscription]}
        await ws.send_str(orjson.dumps(payload).decode())
        assert (await _next(ws))["result"] is True
        assert hub.follower.idle
        assert hub._follower_task is None


class ScriptedChain:
    """A chain the follower reads, changed by the test between polls (a reorg on demand)."""

    def __init__(self) -> None:
        self.blocks = [self._block(0, "0x" + "00" * 32, "genesis")]
        self.logs: dict[str, list[dict]] = {}

    @staticmethod
    def _block(number, parent, tag):
        return {"number": hex(number), "hash": f"0x{tag}-{number}", "parentHash": parent}

    def mine(self, tag="a", log=False):
        block = self._block(len(self.blocks), self.blocks[-1]["hash"], tag)
        self.blocks.append(block)
        if log:
            entry = {"blockHash": block["hash"], "blockNumber": block["number"], "removed": False}
            self.logs[block["hash"]] = [entry]

    def reorg(self, depth, tag):
        del self.blocks[-depth:]
        for _ in range(depth + 1):
            self.mine(tag, log=True)

    async def call(self, method, params):
        if method == "eth_blockNumber":
            return hex(len(self.blocks) - 1)
        if method == "eth_getBlockByNumber":
            return self.blocks[int(params[0], 16)]
        low, high = int(params[0]["fromBlock"], 16), int(params[0]["toBlock"], 16)
        return [e for b in self.blocks[low : high + 1] for e in self.logs.get(b["hash"], [])]


async def test_a_reorg_is_followed_and_its_logs_retracted():
    chain = ScriptedChain()
    follower = ChainFollower(chain.call, poll_s=1)
    heads, logs = [], []
    follower.heads["all"] = lambda header: heads.append(orjson.loads(header))
    from gateway.rpc.polled import LogsWatch

    follower.logs["all"] = LogsWatch({}, lambda entry: logs.append(orjson.loads(entry)))
    await follower.poll()  # starts after the tip
    chain.mine(log=True)
    chain.mine(log=True)
    await follower.poll()
    assert [h["hash"] for h in heads] == ["0xa-1", "0xa-2"]
    chain.reorg(depth=2, tag="b")  # blocks 1 and 2 replaced, block 3 added
    await follower.poll()
    assert [h["hash"] for h in heads] == ["0xa-1", "0xa-2", "0xb-1", "0xb-2", "0xb-3"]
    removed = [e["blockHash"] for e in logs if e["removed"]]
    assert sorted(removed) == ["0xa-1", "0xa-2"]
    added = [e["blockHash"] for e in logs if not e["removed"]]
    assert added == ["0xa-1", "0xa-2", "0xb-1", "0xb-2", "0xb-3"]


async def test_a_new_subscriber_after_a_pause_starts_at_the_tip(http_only_gateway, fresh_anvil):
    async with http_only_gateway.ws_connect("/rpc") as ws:
        first = (await _subscribe(ws, "newHeads"))["result"]
        payload = {"jsonrpc": "2.0", "id": 2, "method": "eth_unsubscribe", "params": [first]}
        await ws.send_str(orjson.dumps(payload).decode())
        assert (await _next(ws))["result"] is True
        fresh_anvil.rpc("anvil_mine", ["0x5"])  # while nobody listens
        await _subscribe(ws, "newHeads")
        tip = int(fresh_anvil.rpc("eth_blockNumber"), 16)
        fresh_anvil.rpc("evm_mine")
        header = (await _next(ws))["params"]["result"]
        assert int(header["number"], 16) == tip + 1  # none of the blocks mined meanwhile
