"""eth_sendRawTransaction reaches every node, once: each node's pool has it, sending it
again answers the same hash (the nodes say "already known" or "nonce too low"), and a node
down does not fail the send."""

from __future__ import annotations

import asyncio

import pytest
from eth_account import Account

from gateway.app import create_app
from gateway.chain import DevChain
from tests.helpers.lane import LaneTestServer
from tests.rpc.conftest import Rpc

pytestmark = pytest.mark.integration


def _transfer(chain: DevChain, nonce: int) -> str:
    account = Account.from_key(chain.accounts[3].private_key)
    signed = account.sign_transaction(
        {
            "to": "0x" + "22" * 20,
            "value": 1,
            "gas": 21_000,
            "maxFeePerGas": 10**10,
            "maxPriorityFeePerGas": 10**9,
            "nonce": nonce,
            "chainId": chain.chain_id,
        }
    )
    return signed.raw_transaction.to_0x_hex()


async def _sent_count(rpc: Rpc, outcome: str) -> float:
    text = await (await rpc.client.get("/metrics")).text()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("gateway_rpc_broadcast_total") and f'outcome="{outcome}"' in line
    )


async def test_a_raw_transaction_reaches_every_node_once(
    aiohttp_client, make_settings, rpc_env, three_nodes
):
    settings = make_settings(upstreams=[chain.url for chain in three_nodes], **rpc_env)
    rpc = Rpc(await aiohttp_client(LaneTestServer(create_app(settings))))
    raw = _transfer(three_nodes[0], nonce=0)
    tx_hash = await rpc.result("eth_sendRawTransaction", [raw])

    async def everywhere():
        for _ in range(50):
            if all(chain.rpc("eth_getTransactionByHash", [tx_hash]) for chain in three_nodes):
                return True
            await asyncio.sleep(0.1)
        return False

    assert await everywhere()  # in every node's pool (anvil mines it at once)
    assert await _sent_count(rpc, "accepted") == 3
    assert await rpc.result("eth_sendRawTransaction", [raw]) == tx_hash  # again: same hash
    assert await _sent_count(rpc, "known") >= 1

    three_nodes[1].stop()  # one node down: the send still succeeds on the others
    second = _transfer(three_nodes[0], nonce=1)
    second_hash = await rpc.result("eth_sendRawTransaction", [second])
    for chain in (three_nodes[0], three_nodes[2]):
        for _ in range(50):
            if chain.rpc("eth_getTransactionByHash", [second_hash]):
                break
            await asyncio.sleep(0.1)
        else:
            pytest.fail(f"{chain.url} does not have the transaction")


async def test_a_transaction_no_node_takes_gets_the_node_error(
    aiohttp_client, make_settings, rpc_env, three_nodes
):
    settings = make_settings(upstreams=[chain.url for chain in three_nodes], **rpc_env)
    rpc = Rpc(await aiohttp_client(LaneTestServer(create_app(settings))))
    poor = Account.create()  # no ETH on any node
    signed = poor.sign_transaction(
        {
            "to": "0x" + "22" * 20,
            "value": 10**18,
            "gas": 21_000,
            "gasPrice": 10**10,
            "nonce": 0,
            "chainId": 31337,
        }
    )
    reply = await rpc.call("eth_sendRawTransaction", [signed.raw_transaction.to_0x_hex()])
    assert "error" in reply, reply
    assert await _sent_count(rpc, "rejected") == 3
