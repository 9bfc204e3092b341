"""Consensus on real anvils: three nodes, one with a different state. 2-of-3 serves the
majority's answer, counts the odd node and sidelines it; with `error` on dispute the client
gets -32003 naming the answers; each participant is a span of the call's one trace."""

from __future__ import annotations

import json

import pytest

from gateway.app import create_app
from tests.helpers.lane import LaneTestServer
from tests.helpers.metrics import sample
from tests.rpc.conftest import Rpc

pytestmark = pytest.mark.integration

WHO = "0x" + "77" * 20


def _rule(**fields) -> str:
    return json.dumps([{"methods": ["eth_getBalance", "eth_call"], **fields}])


async def _gateway(aiohttp_client, make_settings, rpc_env, nodes, spans=None, **env) -> Rpc:
    settings = make_settings(
        upstreams=[node.url for node in nodes],
        **rpc_env,
        GATEWAY_RPC__CACHE_ENABLED="false",
        **env,
    )
    app = create_app(settings, span_exporters=[spans] if spans is not None else [])
    return Rpc(await aiohttp_client(LaneTestServer(app)))


def _name(node) -> str:
    return f"127.0.0.1:{node.port}"


def _balance_call(number: int) -> dict:
    return {"jsonrpc": "2.0", "id": number, "method": "eth_getBalance", "params": [WHO, "latest"]}


async def test_two_of_three_serve_the_majority_and_sideline_the_odd_node(
    aiohttp_client, make_settings, rpc_env, three_nodes, spans
):
    for node in three_nodes[:2]:
        node.rpc("anvil_setBalance", [WHO, hex(10**18)])
    odd = three_nodes[2]
    odd.rpc("anvil_setBalance", [WHO, hex(5)])
    rpc = await _gateway(
        aiohttp_client,
        make_settings,
        rpc_env,
        three_nodes,
        spans,
        GATEWAY_RPC__CONSENSUS__RULES=_rule(participants=3, agreement=2),
        GATEWAY_RPC__CONSENSUS__PUNISH_S="60",
    )
    response = await rpc.post(_balance_call(1))
    assert response.status == 200
    assert (await response.json())["result"] == hex(10**18)
    assert response.headers["X-Gateway-Consensus"] == "agreed=2/3"
    assert response.headers["X-Gateway-Upstream"] != _name(odd)
    metrics = await (await rpc.client.get("/metrics")).text()
    misbehaved = "gateway_upstream_misbehavior_total"
    assert sample(metrics, misbehaved, method="eth_getBalance", upstream=_name(odd)) == 1.0
    for node in three_nodes[:2]:
        assert sample(metrics, misbehaved, method="eth_getBalance", upstream=_name(node)) is None
    consensus = "gateway_rpc_consensus_total"
    assert sample(metrics, consensus, method="eth_getBalance", outcome="agreed") == 1.0

    # Sidelined: the next calls are decided by the two others, and no call goes to it.
    for number in range(2, 6):
        response = await rpc.post(_balance_call(number))
        assert (await response.json())["result"] == hex(10**18)
        assert response.headers["X-Gateway-Consensus"] == "agreed=2/2"
    for number in range(6, 12):
        response = await rpc.post({"jsonrpc": "2.0", "id": number, "method": "eth_chainId"})
        assert response.headers["X-Gateway-Upstream"] != _name(odd)

    # One trace: the call's span, the consensus span and one span per participant.
    consensus = [s for s in spans.get_finished_spans() if s.name == "rpc consensus"]
    assert consensus, [s.name for s in spans.get_finished_spans()]
    first = consensus[0]
    participants = [
        s
        for s in spans.get_finished_spans()
        if s.name == "rpc consensus participant" and s.parent.span_id == first.context.span_id
    ]
    assert sorted(s.attributes["gateway.upstream"] for s in participants) == sorted(
        _name(node) for node in three_nodes
    )
    assert {s.context.trace_id for s in participants} == {first.context.trace_id}
    assert first.attributes["gateway.consensus"] == "agreed=2/3"


async def test_a_dispute_is_an_error_naming_the_answers(
    aiohttp_client, make_settings, rpc_env, three_nodes
):
    one, two = three_nodes[:2]
    one.rpc("anvil_setBalance", [WHO, hex(1)])
    two.rpc("anvil_setBalance", [WHO, hex(2)])
    rpc = await _gateway(
        aiohttp_client,
        make_settings,
        rpc_env,
        [one, two],
        GATEWAY_RPC__CONSENSUS__RULES=_rule(participants=2, agreement=2, on_dispute="error"),
    )
    response = await rpc.post(_balance_call(1))
    body = await response.json()
    error = body["error"]
    assert error["code"] == -32003, body
    assert "did not agree" in error["message"]
    assert error["data"]["code"] == "rpc.consensus_dispute"
    assert response.headers["X-Gateway-Consensus"] == "dispute=1/2"
    answers = {a["answer"]: a["upstreams"] for a in error["data"]["answers"]}
    assert answers == {'"0x1"': [_name(one)], '"0x2"': [_name(two)]}
    metrics = await (await rpc.client.get("/metrics")).text()
    consensus = "gateway_rpc_consensus_total"
    assert sample(metrics, consensus, method="eth_getBalance", outcome="dispute_error") == 1.0
    assert "gateway_upstream_misbehavior_total{" not in metrics  # nobody is known wrong


async def test_other_methods_and_unpinned_calls_skip_consensus(
    aiohttp_client, make_settings, rpc_env, three_nodes
):
    one, two = three_nodes[:2]
    for node, balance in ((one, 1), (two, 2)):  # block 1 the same, the state after it not
        node.rpc("anvil_mine", ["0x2"])
        node.rpc("anvil_setBalance", [WHO, hex(balance)])
        node.rpc("evm_mine")
    rpc = await _gateway(
        aiohttp_client,
        make_settings,
        rpc_env,
        [one, two],
        GATEWAY_RPC__CONSENSUS__RULES=_rule(participants=2, agreement=2, pinned_only=True),
    )
    response = await rpc.post(_balance_call(1))  # `latest`: not pinned, one node answers
    assert (await response.json())["result"] in {"0x1", "0x2"}
    assert "X-Gateway-Consensus" not in response.headers
    pinned = {"jsonrpc": "2.0", "id": 2, "method": "eth_getBalance", "params": [WHO, "0x1"]}
    response = await rpc.post(pinned)  # at block 1 both agree
    assert response.headers["X-Gateway-Consensus"] == "agreed=2/2"
    response = await rpc.post({"jsonrpc": "2.0", "id": 3, "method": "eth_blockNumber"})
    assert "X-Gateway-Consensus" not in response.headers


async def test_with_no_node_to_ask_it_is_no_upstream_not_a_dispute(
    aiohttp_client, make_settings, rpc_env
):
    from gateway.server import free_port

    rpc = await _gateway(
        aiohttp_client,
        make_settings,
        rpc_env,
        [type("Closed", (), {"url": f"http://127.0.0.1:{free_port()}"})()],
        GATEWAY_RPC__CONSENSUS__RULES=_rule(participants=2, agreement=2),
    )
    response = await rpc.post(_balance_call(1))
    body = await response.json()
    assert body["error"]["code"] == -32002, body  # as any call with no node, not -32003
    assert body["error"]["message"] == "no upstream node is available"
    assert "gateway_rpc_consensus_total{" not in await (await rpc.client.get("/metrics")).text()
