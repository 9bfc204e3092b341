"""Two (or three) real anvils behind the gateway: failover, lag, wrong chain, the tip."""

import asyncio

import pytest
from aiohttp import web
from eth_account import Account

from gateway.app import create_app
from gateway.chain import DevChain
from gateway.rpc.context import POOL
from tests.helpers.fake_node import fake_node_app
from tests.helpers.lane import LaneTestServer
from tests.helpers.metrics import sample
from tests.helpers.waiting import eventually
from tests.rpc.conftest import Rpc

pytestmark = pytest.mark.integration


async def test_killing_a_node_during_reads_is_invisible(
    aiohttp_client, fresh_anvil, second_anvil, make_settings, rpc_env
):
    settings = make_settings(
        upstreams=[fresh_anvil.url, second_anvil.url], **rpc_env, GATEWAY_RPC__CACHE_ENABLED="false"
    )
    client = await aiohttp_client(LaneTestServer(create_app(settings)))
    rpc = Rpc(client)
    address = fresh_anvil.accounts[1].address
    errors = []

    calls = []

    async def reader():
        for _ in range(60):
            reply = await rpc.call("eth_getBalance", [address, "latest"])
            calls.append(reply)
            if "error" in reply:
                errors.append(reply)
            await asyncio.sleep(0.005)

    readers = [asyncio.create_task(reader()) for _ in range(4)]
    await eventually(lambda: len(calls) >= 8, what="reads in flight")
    fresh_anvil.stop()
    await asyncio.gather(*readers)
    assert errors == []
    text = await (await client.get("/metrics")).text()
    stopped = f"127.0.0.1:{fresh_anvil.port}"
    assert sample(text, "gateway_rpc_failovers_total", upstream=stopped) >= 1


@pytest.fixture(name="paused_anvil")
def _paused_anvil(tmp_path):
    """An anvil that mines nothing: it falls behind as soon as the other one mines."""
    with DevChain.start(log_dir=tmp_path / "paused", extra_args=["--no-mining"]) as paused:
        yield paused


@pytest.fixture(name="mining_and_paused")
def _mining_and_paused(aiohttp_client, fresh_anvil, paused_anvil, make_settings, rpc_env):
    """A gateway on a mining anvil and a paused one (no cache), for a lag threshold."""

    async def gateway(max_lag_blocks: int):
        settings = make_settings(
            upstreams=[fresh_anvil.url, paused_anvil.url],
            GATEWAY_RPC__MAX_LAG_BLOCKS=str(max_lag_blocks),
            GATEWAY_RPC__CACHE_ENABLED="false",
            **rpc_env,
        )
        return await aiohttp_client(LaneTestServer(create_app(settings)))

    return gateway


async def test_lagging_node_leaves_rotation(mining_and_paused, fresh_anvil, paused_anvil):
    client = await mining_and_paused(max_lag_blocks=3)
    rpc = Rpc(client)
    pool = client.app[POOL]
    fresh_anvil.rpc("anvil_mine", ["0xa"])
    await pool.poll_heads()
    lagging = next(u for u in pool.upstreams if u.url == paused_anvil.url)
    assert pool.lagging(lagging)
    for _ in range(20):
        assert int(await rpc.result("eth_blockNumber"), 16) == 10
    text = await (await client.get("/metrics")).text()
    paused = f"127.0.0.1:{paused_anvil.port}"
    assert sample(text, "gateway_upstream_lag_blocks", upstream=paused) == 10.0
    assert (
        sample(
            text,
            "gateway_rpc_upstream_requests_total",
            method="eth_blockNumber",
            outcome="ok",
            upstream=paused,
        )
        is None
    )


async def test_served_tip_never_goes_backwards(mining_and_paused, fresh_anvil):
    # the lag threshold is loose, so the behind node stays in rotation
    client = await mining_and_paused(max_lag_blocks=100)
    rpc = Rpc(client)
    fresh_anvil.rpc("anvil_mine", ["0x5"])
    await client.app[POOL].poll_heads()
    seen = [int(await rpc.result("eth_blockNumber"), 16) for _ in range(40)]
    assert seen == sorted(seen)
    assert seen[-1] == 5
    text = await (await client.get("/metrics")).text()
    mining = f"127.0.0.1:{fresh_anvil.port}"
    assert sample(text, "gateway_upstream_head_block", upstream=mining, tag="latest") == 5


async def test_node_on_another_chain_is_refused_at_start(
    aiohttp_client, fresh_anvil, tmp_path, make_settings, rpc_env, logs
):
    with DevChain.start(log_dir=tmp_path / "mainnet-ish", chain_id=1) as other:
        settings = make_settings(
            upstreams=[other.url, fresh_anvil.url], GATEWAY_CHAIN_ID="31337", **rpc_env
        )
        client = await aiohttp_client(LaneTestServer(create_app(settings)))
        pool = client.app[POOL]
        refused = next(u for u in pool.upstreams if u.url == other.url)
        assert refused.chain_ok is False
        rpc = Rpc(client)
        for _ in range(10):
            assert await rpc.result("net_version") == "31337"
        assert any(line["event"] == "upstream refused: wrong chain" for line in logs.lines())


@pytest.fixture(name="swallowing_node")
async def _swallowing_node(aiohttp_server):
    """A node that reads the request, then drops the connection: it may have received a
    transaction, so the gateway must not send it to another node."""
    seen: list = []

    async def on_call(request: web.Request, body: dict) -> web.StreamResponse:
        if body.get("method") == "eth_sendRawTransaction":
            request.transport.close()  # connection lost after the request arrived
            await asyncio.sleep(1)
        return web.json_response({"jsonrpc": "2.0", "id": body["id"], "result": "0x7a69"})

    server = await aiohttp_server(fake_node_app(on_call, seen))
    server.seen = seen
    return server


async def test_raw_transaction_reaches_each_node_once(
    aiohttp_client, swallowing_node, fresh_anvil, make_settings, rpc_env
):
    """Broadcast to every node: a node that swallows it does not hold the answer, and no
    node is sent it twice."""
    settings = make_settings(
        upstreams=[f"http://127.0.0.1:{swallowing_node.port}", fresh_anvil.url],
        GATEWAY_RPC__MAX_LAG_BLOCKS="1000",
        **rpc_env,
    )
    app = create_app(settings)
    client = await aiohttp_client(LaneTestServer(app))
    pool = app[POOL]
    fake = next(u for u in pool.upstreams if str(swallowing_node.port) in u.url)
    real = next(u for u in pool.upstreams if u.url == fresh_anvil.url)
    real.weight, fake.weight = 1, 1_000_000  # the swallowing node comes first
    sender = Account.from_key(fresh_anvil.accounts[3].private_key)
    raw = sender.sign_transaction(
        {
            "to": sender.address,
            "value": 1,
            "gas": 21000,
            "chainId": 31337,
            "nonce": 0,
            "maxFeePerGas": 10**10,
            "maxPriorityFeePerGas": 10**9,
        }
    ).raw_transaction
    tx_hash = await Rpc(client).result("eth_sendRawTransaction", ["0x" + raw.hex()])
    bodies = [entry["body"] for entry in swallowing_node.seen]
    sends = [b for b in bodies if isinstance(b, dict) and b["method"] == "eth_sendRawTransaction"]
    assert len(sends) == 1
    assert fresh_anvil.rpc("eth_getTransactionByHash", [tx_hash]) is not None
    assert fresh_anvil.rpc("eth_getTransactionCount", [sender.address, "latest"]) == "0x1"


async def test_raw_transaction_fails_over_when_the_first_node_is_unreachable(
    aiohttp_client, fresh_anvil, make_settings, rpc_env
):
    from tests.helpers.processes import free_port

    settings = make_settings(
        upstreams=[f"http://127.0.0.1:{free_port()}", fresh_anvil.url], **rpc_env
    )
    app = create_app(settings)
    client = await aiohttp_client(LaneTestServer(app))
    dead = next(u for u in app[POOL].upstreams if u.url != fresh_anvil.url)
    dead.healthy, dead.weight = True, 1_000_000  # pretend it was up: it is tried first
    sender = Account.from_key(fresh_anvil.accounts[4].private_key)
    raw = sender.sign_transaction(
        {
            "to": sender.address,
            "value": 1,
            "gas": 21000,
            "chainId": 31337,
            "nonce": 0,
            "maxFeePerGas": 10**10,
            "maxPriorityFeePerGas": 10**9,
        }
    ).raw_transaction
    tx_hash = await Rpc(client).result("eth_sendRawTransaction", ["0x" + raw.hex()])
    assert fresh_anvil.rpc("eth_getTransactionByHash", [tx_hash]) is not None


async def test_breaker_opens_after_repeated_failures(
    aiohttp_client, fresh_anvil, make_settings, rpc_env
):
    settings = make_settings(
        upstreams=[fresh_anvil.url],
        GATEWAY_RPC__BREAKER_THRESHOLD="2",
        GATEWAY_RPC__CACHE_ENABLED="false",
        **rpc_env,
    )
    client = await aiohttp_client(LaneTestServer(create_app(settings)))
    rpc = Rpc(client)
    upstream = client.app[POOL].upstreams[0]
    fresh_anvil.stop()
    for _ in range(3):
        reply = await rpc.call("eth_getBalance", ["0x" + "00" * 20, "latest"])
        assert reply["error"]["code"] in {-32002, -32603}
    assert upstream.breaker.state == upstream.breaker.OPEN
    text = await (await client.get("/metrics")).text()
    assert sample(text, "gateway_upstream_breaker_state", upstream=upstream.name) == 2  # open
