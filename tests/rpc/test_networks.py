"""Two networks behind one gateway: two anvils on chain ids 31337 and 31338.

Each network has its nodes, heads, cache, coalescing and subscriptions; nothing of one
answers for the other.
"""

import asyncio
import json

import pytest

from gateway.app import create_app
from gateway.config import load_settings
from gateway.errors import SettingsError
from gateway.rpc.networks import NETWORKS
from tests.helpers.lane import LaneTestServer, answered
from tests.helpers.metrics import sample

pytestmark = pytest.mark.integration

FIRST, SECOND = 31337, 31338
STRANGER = "0x00000000000000000000000000000000000000aa"


def _networks(first: dict, second: dict, **extra) -> str:
    """Two networks, each with one upstream table."""
    return json.dumps(
        [
            {"chain_id": FIRST, "alias": "alpha", "upstreams": [first]},
            {"chain_id": SECOND, "alias": "beta", "upstreams": [second], **extra},
        ]
    )


def _node(chain) -> dict:
    return {"url": chain.url, "ws_url": chain.ws_url}


@pytest.fixture(name="two_networks")
async def _two_networks(aiohttp_client, fresh_anvil, chain_b, make_settings, rpc_env):
    settings = make_settings(
        GATEWAY_NETWORKS=_networks(_node(fresh_anvil), _node(chain_b)),
        **{**rpc_env, "GATEWAY_RPC__HEALTH_INTERVAL_S": "30"},
    )
    return await aiohttp_client(LaneTestServer(create_app(settings)))


async def _call(client, path: str, method: str, params=None):
    payload = {"jsonrpc": "2.0", "id": 7, "method": method, "params": params or []}
    response = await client.post(path, json=payload)
    assert response.status == 200, await response.text()
    return await response.json()


async def test_each_network_answers_from_its_own_chain(two_networks):
    client = two_networks
    for path, chain_id in [
        ("/rpc", FIRST),
        ("/rpc/31337", FIRST),
        ("/rpc/alpha", FIRST),
        ("/rpc/31338", SECOND),
        ("/rpc/beta", SECOND),
    ]:
        for _ in range(2):  # the second from that network's cache
            assert (await _call(client, path, "eth_chainId"))["result"] == hex(chain_id), path
    text = await (await client.get("/metrics")).text()
    hits = "gateway_rpc_cache_requests_total"
    # 3 paths of the first network (6 calls, 1 miss), 2 of the second (4 calls, 1 miss)
    assert sample(text, hits, network=str(FIRST), result="hit") == 5
    assert sample(text, hits, network=str(SECOND), result="hit") == 3
    assert sample(text, hits, network=str(FIRST), result="miss") == 1
    assert sample(text, hits, network=str(SECOND), result="miss") == 1
    # The route is the template, whichever transport answered.
    assert (
        sample(
            text, "gateway_http_requests_total", method="POST", route="/rpc/{network}", status="200"
        )
        == 8
    )  # /rpc/31337, /rpc/alpha, /rpc/31338, /rpc/beta, twice each


async def test_the_same_call_on_two_networks_shares_no_cache_entry_or_node_call(
    two_networks, chain_b
):
    client = two_networks
    chain_b.rpc("anvil_setBalance", [STRANGER, "0x2a"])
    chain_b.rpc("evm_mine")
    await client.app[NETWORKS].find("beta").pool.poll_heads()
    params = [STRANGER, "latest"]
    # Concurrent identical reads on both networks: each coalesces with its own only.
    replies = await asyncio.gather(
        *(_call(client, path, "eth_getBalance", params) for path in ["/rpc/alpha", "/rpc/beta"] * 5)
    )
    assert {reply["result"] for reply in replies[0::2]} == {"0x0"}
    assert {reply["result"] for reply in replies[1::2]} == {"0x2a"}
    # Cached answers stay each network's.
    assert (await _call(client, "/rpc/alpha", "eth_getBalance", params))["result"] == "0x0"
    assert (await _call(client, "/rpc/beta", "eth_getBalance", params))["result"] == "0x2a"
    text = await (await client.get("/metrics")).text()
    networks = client.app[NETWORKS]
    for name in ("alpha", "beta"):
        network = networks.find(name)
        node_calls = sample(
            text,
            "gateway_rpc_upstream_requests_total",
            network=network.label,
            upstream=network.pool.upstreams[0].name,
            method="eth_getBalance",
            outcome="ok",
        )
        assert node_calls == 1, name  # five callers, one node call, per network


async def test_an_unknown_network_is_404_with_the_known_ones(two_networks):
    client = two_networks
    for path in ("/rpc/1", "/rpc/gamma"):
        response = await client.post(path, json={"jsonrpc": "2.0", "id": 1, "method": "x"})
        assert response.status == 404
        error = (await response.json())["error"]
        assert error["code"] == "rpc.unknown_network"
        assert "31337" in error["message"]
        assert "beta" in error["message"]
        assert error["data"] == [
            {"chainId": FIRST, "alias": "alpha"},
            {"chainId": SECOND, "alias": "beta"},
        ]
    response = await client.get("/rpc/gamma", headers={"Upgrade": "websocket"})
    assert response.status == 404


async def test_a_node_on_the_wrong_chain_fails_readiness_of_its_network_only(
    aiohttp_client, fresh_anvil, chain_b, make_settings, rpc_env
):
    networks = [
        {"chain_id": FIRST, "upstreams": [{"url": fresh_anvil.url}]},
        {"chain_id": 5, "alias": "goerli", "upstreams": [{"url": chain_b.url}]},  # 31338 in fact
    ]
    settings = make_settings(GATEWAY_NETWORKS=json.dumps(networks), **rpc_env)
    client = await aiohttp_client(LaneTestServer(create_app(settings)))

    whole = await client.get("/readyz")
    assert whole.status == 503
    body = await whole.json()
    assert body["checks"][f"upstream:{FIRST}:127.0.0.1:{fresh_anvil.port}"] == "ok"
    assert body["checks"][f"upstream:5:127.0.0.1:{chain_b.port}"] == "wrong chain 31338 (want 5)"
    assert body["error"]["message"] == "not ready: network 5 upstream unavailable"
    assert (await client.get("/readyz", params={"network": str(FIRST)})).status == 200
    assert (await client.get("/readyz", params={"network": "goerli"})).status == 503
    assert (await client.get("/readyz", params={"network": "nope"})).status == 404
    # The first network serves; the second has no node on its chain.
    assert (await _call(client, "/rpc", "eth_chainId"))["result"] == hex(FIRST)
    reply = await _call(client, "/rpc/goerli", "eth_chainId")
    assert reply["error"]["code"] == -32002


async def test_new_heads_on_each_network_follow_its_own_chain(two_networks, fresh_anvil, chain_b):
    client = two_networks
    subscribe = {"jsonrpc": "2.0", "id": 1, "method": "eth_subscribe", "params": ["newHeads"]}
    async with client.ws_connect("/rpc/alpha") as alpha, client.ws_connect("/rpc/beta") as beta:
        for ws in (alpha, beta):
            await ws.send_json(subscribe)
            assert "result" in await ws.receive_json(timeout=5)
        chain_b.rpc("anvil_mine", ["0x3"])
        numbers = [
            int((await beta.receive_json(timeout=5))["params"]["result"]["number"], 16)
            for _ in range(3)
        ]
        assert numbers == [1, 2, 3]
        with pytest.raises(asyncio.TimeoutError):
            await alpha.receive_json(timeout=0.5)  # nothing mined on the first chain
        fresh_anvil.rpc("evm_mine")
        head = (await alpha.receive_json(timeout=5))["params"]["result"]
        assert int(head["number"], 16) == int(fresh_anvil.rpc("eth_blockNumber"), 16)


async def test_a_reorg_on_one_network_flushes_only_its_entries(two_networks, fresh_anvil, chain_b):
    client = two_networks
    networks = client.app[NETWORKS]
    alpha, beta = networks.find("alpha"), networks.find("beta")
    for chain in (fresh_anvil, chain_b):
        chain.rpc("anvil_mine", ["0x2"])
    await alpha.pool.poll_heads()
    await beta.pool.poll_heads()
    snapshot = fresh_anvil.rpc("evm_snapshot")
    fresh_anvil.rpc("evm_mine")
    await alpha.pool.poll_heads()
    for path, chain in (("/rpc/alpha", fresh_anvil), ("/rpc/beta", chain_b)):
        block = chain.rpc("eth_getBlockByNumber", ["latest", False])
        assert (await _call(client, path, "eth_getBlockByHash", [block["hash"], False]))[
            "result"
        ] == block
    assert len(alpha.cache) > 0
    kept = len(beta.cache)
    assert kept > 0

    fresh_anvil.rpc("evm_revert", [snapshot])
    fresh_anvil.rpc("anvil_mine", ["0x2"])
    await alpha.pool.poll_heads()

    assert alpha.pool.head is not None
    assert alpha.pool.head.reorg_from is not None
    assert len(alpha.cache) == 0
    assert len(beta.cache) == kept


@pytest.mark.parametrize("beta_own", [False, True], ids=["shared", "beta's own"])
async def test_rate_limits_are_one_budget_across_networks_unless_a_network_has_its_own(
    aiohttp_client, fresh_anvil, chain_b, make_settings, beta_own
):
    limited = {"GATEWAY_RPC__ANONYMOUS__RATE_PER_S": "0.001", "GATEWAY_RPC__ANONYMOUS__BURST": "2"}
    own = {"rpc": {"anonymous": {"rate_per_s": 0.001, "burst": 3}}} if beta_own else {}
    settings = make_settings(
        GATEWAY_NETWORKS=_networks(_node(fresh_anvil), _node(chain_b), **own), **limited
    )
    client = await aiohttp_client(LaneTestServer(create_app(settings)))
    payload = {"jsonrpc": "2.0", "id": 1, "method": "eth_chainId"}

    async def statuses(path: str, count: int) -> list[int]:
        return [(await client.post(path, json=payload)).status for _ in range(count)]

    if beta_own:
        assert await statuses("/rpc/beta", 4) == [200, 200, 200, 429]  # its own budget of 3
        assert await statuses("/rpc/alpha", 3) == [200, 200, 429]  # [rpc]'s, untouched by beta
    else:  # one budget of 2 for the caller, whichever network it calls
        assert await statuses("/rpc/alpha", 1) == [200]
        assert await statuses("/rpc/beta", 2) == [200, 429]
        assert await statuses("/rpc", 1) == [429]


def test_networks_settings_are_checked():
    def load(**environ: str):
        return load_settings(None, environ)

    two = _networks({"url": "http://a:8545"}, {"url": "http://b:8545"})
    assert [n.chain_id for n in load(GATEWAY_NETWORKS=two).network_list()] == [FIRST, SECOND]
    chosen = load(GATEWAY_NETWORKS=two, GATEWAY_DEFAULT_NETWORK="beta").network_list()
    assert [n.alias for n in chosen] == ["beta", "alpha"]
    one = load(GATEWAY_UPSTREAMS="http://a:8545", GATEWAY_CHAIN_ID="5").network_list()
    assert [(n.chain_id, len(n.upstreams)) for n in one] == [(5, 1)]
    for bad, says in [
        ({"GATEWAY_NETWORKS": two, "GATEWAY_UPSTREAMS": "http://c:8545"}, "not both"),
        ({"GATEWAY_NETWORKS": two, "GATEWAY_DEFAULT_NETWORK": "gamma"}, "none of the networks"),
        ({"GATEWAY_NETWORKS": json.dumps([{"alias": "x"}])}, "needs its chain id"),
        ({"GATEWAY_NETWORKS": json.dumps([{"chain_id": 1}, {"chain_id": 1}])}, "names two"),
        ({"GATEWAY_NETWORKS": json.dumps([{"chain_id": 1, "alias": "10"}])}, "alias"),
        ({"GATEWAY_NETWORKS": json.dumps([{"chain_id": 1, "rpc": {"bogus": 1}}])}, "unknown"),
    ]:
        with pytest.raises(SettingsError) as raised:
            load(**bad)
        assert says in str(raised.value), (bad, str(raised.value))


def test_check_config_masks_every_networks_secrets():
    networks = [
        {
            "chain_id": 1,
            "upstreams": [{"url": "https://user:hunter2@node.example/v3/0123456789abcdef0123"}],
            "relay": {"private_key": "0x" + "11" * 32},
        }
    ]
    masked = json.dumps(load_settings(None, {"GATEWAY_NETWORKS": json.dumps(networks)}).masked())
    assert "hunter2" not in masked
    assert "0123456789abcdef0123" not in masked
    assert "11" * 32 not in masked


async def test_every_network_is_on_the_fast_path(two_networks):
    client = two_networks
    before = answered(client.server)
    for path in ("/rpc", "/rpc/31337", "/rpc/alpha", "/rpc/31338", "/rpc/beta"):
        await _call(client, path, "eth_chainId")
    assert answered(client.server) == before + 5
