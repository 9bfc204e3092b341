"""web3.py through the gateway, limits, eth_getLogs chunks, the cache and reorgs."""

import asyncio

import pytest
from eth_account import Account
from web3 import AsyncHTTPProvider, AsyncWeb3

from gateway.app import create_app
from gateway.rpc.context import CACHE, POOL
from gateway.rpc.routes import HUB
from tests.helpers.chain import deploy, transact
from tests.helpers.lane import LaneTestServer
from tests.helpers.metrics import sample
from tests.helpers.waiting import eventually
from tests.rpc.conftest import Rpc

pytestmark = pytest.mark.integration


async def test_web3_http_provider_reads_and_sends_a_transfer(gateway_rpc, anvil):
    url = str(gateway_rpc.client.make_url("/rpc"))
    w3 = AsyncWeb3(AsyncHTTPProvider(url))
    try:
        assert await w3.eth.chain_id == 31337
        sender = Account.from_key(anvil.accounts[5].private_key)
        receiver = Account.create().address
        balance = await w3.eth.get_balance(sender.address)
        assert balance > 10**18
        tx = {
            "to": receiver,
            "value": 12345,
            "gas": 21000,
            "chainId": 31337,
            "nonce": await w3.eth.get_transaction_count(sender.address),
            "maxFeePerGas": 2 * (await w3.eth.gas_price) + 10**9,
            "maxPriorityFeePerGas": 10**9,
        }
        tx_hash = await w3.eth.send_raw_transaction(sender.sign_transaction(tx).raw_transaction)
        receipt = await w3.eth.wait_for_transaction_receipt(tx_hash, timeout=10)
        assert receipt["status"] == 1
        assert await w3.eth.get_balance(receiver) == 12345
        block = await w3.eth.get_block("latest")
        assert block["number"] >= receipt["blockNumber"]
    finally:
        await w3.provider.disconnect()


@pytest.mark.parametrize("buckets", ["memory", "redis"])
async def test_rate_limit_429_single_and_32005_in_batch(
    request, aiohttp_client, anvil, make_settings, rpc_env, buckets
):
    env = {
        **rpc_env,
        "GATEWAY_RPC__ANONYMOUS__RATE_PER_S": "0.5",
        "GATEWAY_RPC__ANONYMOUS__BURST": "3",
    }
    if buckets == "redis":
        env["GATEWAY_REDIS_URL"] = f"{request.getfixturevalue('redis_server')}/15"
        import redis as redis_sync

        redis_sync.Redis.from_url(env["GATEWAY_REDIS_URL"]).flushdb()
    settings = make_settings(upstreams=[anvil.url], **env)
    client = await aiohttp_client(LaneTestServer(create_app(settings)))
    rpc = Rpc(client)
    batch = [{"jsonrpc": "2.0", "id": i, "method": "eth_chainId"} for i in range(5)]
    replies = await (await rpc.post(batch)).json()
    assert [("result" in r) for r in replies] == [True, True, True, False, False]
    assert replies[3]["error"]["code"] == -32005
    single = await rpc.post({"jsonrpc": "2.0", "id": 9, "method": "eth_chainId"})
    assert single.status == 429
    assert int(single.headers["Retry-After"]) >= 1
    assert (await single.json())["error"]["code"] == -32005
    # a heavier method costs more units: eth_getLogs weighs 5 by default
    text = await (await client.get("/metrics")).text()
    assert 'gateway_rate_limited_total{tier="anonymous"} 3.0' in text


async def test_get_logs_is_chunked_and_merged_in_order(
    aiohttp_client, fresh_anvil, make_settings, rpc_env
):
    factory = deploy(fresh_anvil, "TestWalletFactory")
    from eth_abi import encode
    from eth_utils import function_signature_to_4byte_selector

    selector = function_signature_to_4byte_selector("deploy(address,bytes32)")
    for index in range(7):  # one block per transaction: 7 Deployed events over 7 blocks
        transact(
            fresh_anvil,
            factory,
            selector
            + encode(["address", "bytes32"], [Account.create().address, index.to_bytes(32, "big")]),
        )
    settings = make_settings(
        upstreams=[fresh_anvil.url],
        GATEWAY_RPC__LOGS_CHUNK_BLOCKS="2",
        GATEWAY_RPC__LOGS_MAX_RANGE="50",
        **rpc_env,
    )
    client = await aiohttp_client(LaneTestServer(create_app(settings)))
    rpc = Rpc(client)
    query = {"fromBlock": "0x0", "toBlock": "latest", "address": factory}
    direct = fresh_anvil.rpc("eth_getLogs", [query])
    through = await rpc.result("eth_getLogs", [query])
    assert len(direct) == 7
    assert through == direct
    # The limit counts the blocks the node would scan: those up to the head.
    fresh_anvil.rpc("anvil_mine", ["0x40"])
    await client.app[POOL].poll_heads()
    too_wide = await rpc.call("eth_getLogs", [{"fromBlock": "0x0", "toBlock": hex(60)}])
    assert too_wide["error"]["code"] == -32005
    assert too_wide["error"]["data"] == {"maxRange": 50, "requestedRange": 61}


async def test_chain_id_is_served_from_the_cache(gateway_rpc):
    for _ in range(3):
        await gateway_rpc.call("eth_chainId")
    text = await (await gateway_rpc.client.get("/metrics")).text()
    assert sample(text, "gateway_rpc_cache_requests_total", result="hit") == 2.0


async def test_latest_value_is_not_served_after_a_new_block(
    aiohttp_client, fresh_anvil, make_settings, rpc_env
):
    settings = make_settings(upstreams=[fresh_anvil.url], **rpc_env)
    client = await aiohttp_client(LaneTestServer(create_app(settings)))
    rpc = Rpc(client)
    pool = client.app[POOL]
    first = await rpc.result("eth_blockNumber")
    assert await rpc.result("eth_blockNumber") == first  # cached for this head
    fresh_anvil.rpc("evm_mine")
    await pool.poll_heads()
    assert int(await rpc.result("eth_blockNumber"), 16) == int(first, 16) + 1


@pytest.mark.parametrize("push", [True, False])
async def test_a_new_block_announced_over_websocket_ends_latest_answers_at_once(
    aiohttp_client, fresh_anvil, make_settings, rpc_env, push
):
    """Polling is every 30 s here: only the node's newHeads announcement can make the cached
    `latest` block stale within a second (and without push it stays cached)."""
    env = {**rpc_env, "GATEWAY_RPC__HEALTH_INTERVAL_S": "30"}
    settings = make_settings(
        upstreams=[f"{fresh_anvil.url}|{fresh_anvil.ws_url}"],
        GATEWAY_RPC__PUSH_HEADS=str(push).lower(),
        **env,
    )
    client = await aiohttp_client(LaneTestServer(create_app(settings)))
    rpc = Rpc(client)
    hub = client.app[HUB]
    await eventually(  # the gateway's own newHeads subscription is live (when pushed)
        lambda: not push or any(feed.ready.is_set() for feed in hub.feeds.values()),
        what="the gateway's newHeads subscription",
    )
    first = int((await rpc.result("eth_getBlockByNumber", ["latest", False]))["number"], 16)
    fresh_anvil.rpc("evm_mine")
    deadline = asyncio.get_running_loop().time() + 2
    latest = first
    while latest == first and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.05)
        latest = int((await rpc.result("eth_getBlockByNumber", ["latest", False]))["number"], 16)
    assert latest == (first + 1 if push else first)
    subscriptions = await (await client.get("/metrics")).text()
    # not a client's
    assert sample(subscriptions, "gateway_ws_subscriptions", type="newHeads") in (None, 0.0)


async def test_reorg_invalidates_cached_blocks(aiohttp_client, fresh_anvil, make_settings, rpc_env):
    fresh_anvil.rpc("anvil_mine", ["0x64"])  # 100 blocks: anvil finalizes latest - 64
    settings = make_settings(upstreams=[fresh_anvil.url], **rpc_env)
    client = await aiohttp_client(LaneTestServer(create_app(settings)))
    rpc = Rpc(client)
    pool, cache = client.app[POOL], client.app[CACHE]
    await pool.poll_heads()
    before = await rpc.result("eth_getBlockByNumber", ["0x14", False])  # block 20 <= finalized
    assert len(cache) >= 1
    assert (await rpc.result("eth_getBlockByNumber", ["0x14", False]))["hash"] == before["hash"]
    fresh_anvil.rpc("anvil_reorg", [90, []])  # rewrites blocks 11..100
    await pool.poll_heads()
    after = await rpc.result("eth_getBlockByNumber", ["0x14", False])
    assert after["hash"] != before["hash"]
    assert after["hash"] == fresh_anvil.rpc("eth_getBlockByNumber", ["0x14", False])["hash"]


async def test_rpc_spans_are_children_of_the_request(gateway_rpc, spans):
    from opentelemetry.trace import SpanKind

    await gateway_rpc.call("eth_getBalance", ["0x" + "00" * 20, "latest"])
    finished = spans.get_finished_spans()
    server = next(s for s in finished if s.kind is SpanKind.SERVER and s.name == "POST /rpc")
    rpc_span = next(s for s in finished if s.name == "rpc eth_getBalance")
    assert rpc_span.parent.span_id == server.context.span_id
    assert rpc_span.attributes["rpc.system"] == "jsonrpc"
    assert rpc_span.attributes["gateway.cache"] == "miss"
    assert rpc_span.attributes["gateway.attempt"] == 1
    client = next(
        s
        for s in finished
        if s.kind is SpanKind.CLIENT and s.parent and s.parent.span_id == rpc_span.context.span_id
    )
    assert client.context.trace_id == server.context.trace_id


async def test_concurrent_reads_all_answer(gateway_rpc, anvil):
    replies = await asyncio.gather(
        *(
            gateway_rpc.call("eth_getBalance", [anvil.accounts[i % 10].address, "latest"])
            for i in range(100)
        )
    )
    assert all("result" in r for r in replies)


async def test_a_redis_rate_limit_holds_across_replicas(
    aiohttp_client, anvil, make_settings, rpc_env, redis_server
):
    """Two gateway apps (replicas) on one Redis: the burst is shared, not doubled."""
    import redis as redis_sync

    url = f"{redis_server}/14"
    redis_sync.Redis.from_url(url).flushdb()
    env = {
        **rpc_env,
        "GATEWAY_REDIS_URL": url,
        "GATEWAY_RPC__ANONYMOUS__RATE_PER_S": "0.01",
        "GATEWAY_RPC__ANONYMOUS__BURST": "10",
    }
    replicas = [
        Rpc(
            await aiohttp_client(
                LaneTestServer(create_app(make_settings(upstreams=[anvil.url], **env)))
            )
        )
        for _ in range(2)
    ]
    accepted = 0
    for index in range(30):
        response = await replicas[index % 2].post(
            {"jsonrpc": "2.0", "id": index, "method": "eth_chainId"}
        )
        accepted += response.status == 200
    assert accepted == 10


async def test_replicas_share_final_answers_through_redis(
    aiohttp_client, fresh_anvil, make_settings, rpc_env, redis_server
):
    """A finalized block fetched by one replica is served by another without a node call;
    head-scoped answers stay in each process."""
    import redis as redis_sync

    url = f"{redis_server}/12"
    redis_sync.Redis.from_url(url).flushdb()
    fresh_anvil.rpc("anvil_mine", ["0x64"])  # block 0x10 is finalized (latest - 64)
    env = {**rpc_env, "GATEWAY_REDIS_URL": url}
    first, second = [
        Rpc(
            await aiohttp_client(
                LaneTestServer(create_app(make_settings(upstreams=[fresh_anvil.url], **env)))
            )
        )
        for _ in range(2)
    ]
    block = await first.result("eth_getBlockByNumber", ["0x10", False])
    assert await second.result("eth_getBlockByNumber", ["0x10", False]) == block
    await second.result("eth_blockNumber")
    text = await (await second.client.get("/metrics")).text()
    node_calls = [
        l for l in text.splitlines() if l.startswith("gateway_rpc_upstream_requests_total{")
    ]
    assert not [l for l in node_calls if 'method="eth_getBlockByNumber"' in l]  # from Redis
    assert [l for l in node_calls if 'method="eth_blockNumber"' in l]  # head-scoped: the node
    assert redis_sync.Redis.from_url(url).keys("gw:rpc:*")
