"""Anchoring goes on through the second node when the first is unreachable (stopped, or
resetting every connection): the batch is one transaction and its proofs verify."""

from __future__ import annotations

import asyncio

import pytest
from eth_account import Account

from gateway.app import create_app
from gateway.records import merkle
from gateway.records.routes import ANCHORER
from tests.helpers.lane import LaneTestServer
from tests.helpers.tcpproxy import proxy_to
from tests.records.conftest import mail, sign_typed

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("fault", ["reset", "stopped"])
async def test_anchoring_goes_on_through_the_other_node(
    aiohttp_client, chain, make_settings, records_env, fault
):
    async with proxy_to(chain.port) as proxy:
        settings = make_settings(upstreams=[proxy.url, chain.url], **records_env)
        client = await aiohttp_client(LaneTestServer(create_app(settings)))
        alice = Account.create()
        ids = []
        for index in range(3):
            typed = mail(alice.address, contents=f"failover {index}")
            response = await client.post(
                "/records", json={"typedData": typed, "signature": sign_typed(alice, typed)}
            )
            assert response.status == 201, await response.text()
            ids.append((await response.json())["id"])
        if fault == "reset":
            proxy.reset_all()
        else:
            await proxy.stop()
        # The pool's order is random: a round may meet the unreachable node first and leave
        # the batch sent but unconfirmed (the next round finishes it), and the background
        # round, woken by the new records, may hold the anchoring lock meanwhile.
        for _ in range(20):
            await client.app[ANCHORER].anchor_once()
            if all([(await client.get(f"/records/{i}/proof")).status == 200 for i in ids]):
                break
            await asyncio.sleep(0.2)
        for record_id in ids:
            response = await client.get(f"/records/{record_id}/proof")
            assert response.status == 200, await response.text()
            proof = await response.json()
            siblings = [bytes.fromhex(p[2:]) for p in proof["proof"]]
            root, leaf = bytes.fromhex(proof["root"][2:]), bytes.fromhex(proof["leaf"][2:])
            assert merkle.verify(root, leaf, siblings)
            receipt = chain.rpc("eth_getTransactionReceipt", [proof["txHash"]])
            assert receipt["status"] == "0x1"
        assert 'status="500"' not in await (await client.get("/metrics")).text()
