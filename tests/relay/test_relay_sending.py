"""Sending under pressure on anvil with automine off: fee bumps with one version mined, the
fee ceiling, deadlines passing while stuck, and cancellation, each freeing its nonce."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest
from aiohttp import web
from eth_account import Account

from tests.helpers.metrics import sample
from tests.helpers.waiting import eventually
from tests.relay.conftest import RELAYER, Frontend
from tests.relay.test_relay_flow import confirmed

pytestmark = pytest.mark.integration

GWEI = 10**9


def receipts(chain, hashes: list[str]) -> list[dict]:
    found = [chain.rpc("eth_getTransactionReceipt", [tx_hash]) for tx_hash in hashes]
    return [receipt for receipt in found if receipt is not None]


async def submitted(frontend: Frontend, request_id: str, attempts: int = 1) -> dict:
    async def check():
        status = await frontend.status(request_id)
        ok = status["status"] == "submitted" and status["attempts"] >= attempts
        return status if ok else None

    return await eventually(check, what=f"{request_id} submitted, {attempts} attempt(s)")


async def at_the_node(chain, tx_hash: str) -> None:
    """Wait until the node holds ``tx_hash``: the relay stores a replacement before it
    broadcasts it, so a block mined as soon as the store shows it could still take the
    version it replaces."""
    await eventually(
        lambda: chain.rpc("eth_getTransactionByHash", [tx_hash]) is not None,
        what=f"{tx_hash} at the node",
    )


async def stuck_request(
    make_relay_client, chain, note: str, **settings: str
) -> tuple[Frontend, Any, str, dict]:
    """A request accepted and broadcast with automine off: (frontend, signer, its id, its
    status once submitted)."""
    client = await make_relay_client(**settings)
    chain.rpc("evm_setAutomine", [False])
    frontend = Frontend(client)
    signer = Account.create()
    status, body = await frontend.submit(await frontend.build(signer, note))
    assert status == 202, body
    return frontend, signer, body["id"], await submitted(frontend, body["id"])


async def test_a_stuck_transaction_is_bumped_and_mined_once(make_relay_client, chain, guestbook):
    client = await make_relay_client(
        GATEWAY_RELAY__BUMP_AFTER_BLOCKS="1", GATEWAY_RELAY__MAX_FEE_GWEI="5000"
    )
    chain.rpc("evm_setAutomine", [False])
    frontend = Frontend(client)
    signer = Account.create()
    status, body = await frontend.submit(await frontend.build(signer, "through a fee spike"))
    assert status == 202, body
    first = await submitted(frontend, body["id"])
    first_fee = int(first["transactions"][0]["maxFeePerGas"])
    chain.rpc("anvil_setNextBlockBaseFeePerGas", [hex(100 * GWEI)])  # far above the first fee
    chain.rpc("evm_mine")  # the spike's block: too expensive for the first version
    assert chain.rpc("eth_getTransactionReceipt", [first["txHash"]]) is None
    bumped = await submitted(frontend, body["id"], attempts=2)
    second = bumped["transactions"][-1]
    assert second["kind"] == "bump"
    assert second["nonce"] == first["transactions"][0]["nonce"]
    assert int(second["maxFeePerGas"]) >= first_fee * 110 // 100
    chain.rpc("evm_mine")
    final = await confirmed(frontend, body["id"])
    assert final["status"] == "confirmed", final
    hashes = [version["hash"] for version in final["transactions"]]
    mined = receipts(chain, hashes)
    assert len(mined) == 1  # one version only, ever
    assert final["txHash"] == mined[0]["transactionHash"]
    assert await guestbook.entries(signer.address) == 1
    relayer = chain.accounts[RELAYER].address
    assert int(chain.rpc("eth_getTransactionCount", [relayer, "latest"]), 16) == 1


async def test_at_the_fee_ceiling_it_waits_and_says_so(make_relay_client, chain):
    client = await make_relay_client(
        GATEWAY_RELAY__BUMP_AFTER_BLOCKS="1", GATEWAY_RELAY__MAX_FEE_GWEI="3"
    )
    chain.rpc("evm_setAutomine", [False])
    frontend = Frontend(client)
    status, body = await frontend.submit(await frontend.build(Account.create(), "capped"))
    assert status == 202, body
    await submitted(frontend, body["id"])
    chain.rpc("anvil_setNextBlockBaseFeePerGas", [hex(50 * GWEI)])
    chain.rpc("evm_mine")

    async def at_ceiling():
        text = await (await client.get("/metrics")).text()
        return sample(text, "gateway_relay_at_fee_ceiling") == 1

    for _ in range(3):  # blocks keep coming: it bumps to the ceiling, then waits there
        chain.rpc("evm_mine")
        await asyncio.sleep(0.3)
    await eventually(at_ceiling, what="gateway_relay_at_fee_ceiling = 1")
    waiting = await frontend.status(body["id"])
    assert waiting["status"] == "submitted"  # never dropped
    assert all(int(v["maxFeePerGas"]) <= 3 * GWEI for v in waiting["transactions"])
    # The spike is over. The node dropped what the base fee priced out; blocks keep coming
    # and the relay broadcasts its stored transaction again until it is mined.
    chain.rpc("anvil_setNextBlockBaseFeePerGas", [hex(GWEI // 10)])
    final = await mine_until_final(chain, frontend, body["id"])
    assert final["status"] == "confirmed"
    assert len(receipts(chain, [v["hash"] for v in final["transactions"]])) == 1


async def mine_until_final(chain, frontend: Frontend, request_id: str) -> dict:
    async def final():
        chain.rpc("evm_mine")
        status = await frontend.status(request_id)
        return status if status["status"] not in ("pending", "sent", "submitted") else None

    return await eventually(final, timeout_s=20, what=f"{request_id} mined as blocks come")


async def test_a_deadline_passing_while_stuck_frees_the_nonce(make_relay_client, chain, guestbook):
    client = await make_relay_client(GATEWAY_RELAY__MIN_DEADLINE_S="0")
    chain.rpc("evm_setAutomine", [False])
    frontend = Frontend(client)
    signer = Account.create()
    deadline = int(time.time()) + 3
    status, body = await frontend.submit(await frontend.build(signer, "late", deadline=deadline))
    assert status == 202, body
    await submitted(frontend, body["id"])

    async def replaced_by_noop():
        versions = (await frontend.status(body["id"]))["transactions"]
        return versions[-1]["kind"] == "noop"

    await eventually(replaced_by_noop, timeout_s=15, what="the no-op replacement")
    await at_the_node(chain, (await frontend.status(body["id"]))["transactions"][-1]["hash"])
    chain.rpc("evm_mine")
    final = await confirmed(frontend, body["id"])
    assert final["status"] == "expired", final
    assert final["txHash"] == final["transactions"][-1]["hash"]
    assert await guestbook.entries(signer.address) == 0
    relayer = chain.accounts[RELAYER].address
    assert int(chain.rpc("eth_getTransactionCount", [relayer, "latest"]), 16) == 1


async def test_the_operator_cancels_a_request_not_mined(make_relay_client, chain, guestbook):
    frontend, signer, request_id, _ = await stuck_request(
        make_relay_client, chain, "cancel me", GATEWAY_RELAY__OPERATOR_TOKEN="op-secret-token"
    )
    client = frontend.client
    anonymous = await client.delete(f"/relay/{request_id}")
    assert anonymous.status == 403
    wrong = await client.delete(f"/relay/{request_id}", headers={"X-Operator-Token": "nope"})
    assert wrong.status == 403
    cancel = await client.delete(
        f"/relay/{request_id}", headers={"X-Operator-Token": "op-secret-token"}
    )
    assert cancel.status == 202, await cancel.text()
    assert (await cancel.json())["cancelRequested"] is True

    async def replaced_by_noop():
        return (await frontend.status(request_id))["transactions"][-1]["kind"] == "noop"

    await eventually(replaced_by_noop, what="the cancelling no-op")
    await at_the_node(chain, (await frontend.status(request_id))["transactions"][-1]["hash"])
    chain.rpc("evm_mine")
    final = await confirmed(frontend, request_id)
    assert final["status"] == "canceled"
    assert await guestbook.entries(signer.address) == 0
    again = await client.delete(
        f"/relay/{request_id}", headers={"X-Operator-Token": "op-secret-token"}
    )
    assert (again.status, (await again.json())["error"]["code"]) == (409, "relay.not_cancelable")


async def test_the_relayer_key_used_elsewhere_does_not_jam_the_relay(
    make_relay_client, chain, guestbook
):
    """The most reported relayer failure: a nonce counter ahead of (or behind) the chain.
    Transactions of the relayer key sent outside the gateway move the chain's count; the
    relay follows it, and a request whose nonce was taken is sent again with a fresh one."""
    relayer = chain.accounts[RELAYER].address
    for _ in range(3):  # before the gateway starts: the chain's count is 3
        chain.rpc("eth_sendTransaction", [{"from": relayer, "to": relayer, "value": "0x0"}])
    client = await make_relay_client()
    frontend = Frontend(client)
    first = Account.create()
    status, body = await frontend.submit(await frontend.build(first, "after outside txs"))
    assert status == 202, body
    final = await confirmed(frontend, body["id"])
    assert final["status"] == "confirmed"
    assert final["transactions"][0]["nonce"] == 3

    # Now the key takes the relay's next nonce while the relay's transaction waits.
    chain.rpc("evm_setAutomine", [False])
    second = Account.create()
    status, body = await frontend.submit(await frontend.build(second, "nonce taken"))
    assert status == 202, body
    waiting = await submitted(frontend, body["id"])
    taken = waiting["transactions"][0]["nonce"]
    chain.rpc("anvil_dropTransaction", [waiting["txHash"]])  # the outside one replaces it
    chain.rpc(
        "eth_sendTransaction",
        [{"from": relayer, "to": relayer, "value": "0x0", "nonce": hex(taken)}],
    )
    final = await mine_until_final(chain, frontend, body["id"])
    assert final["status"] == "confirmed", final
    assert final["transactions"][-1]["nonce"] == taken + 1  # sent again, a fresh nonce
    assert await guestbook.entries(second.address) == 1
    mined = int(chain.rpc("eth_getTransactionCount", [relayer, "latest"]), 16)
    assert mined == taken + 2  # no gap, nothing twice


async def test_a_request_that_reverts_on_chain_ends_failed(make_relay_client, chain, guestbook):
    """Simulated fine, mined in a block past its deadline: the forwarder reverts, the relayer
    paid, the request ends `failed` with a reason, and later requests still go out."""
    client = await make_relay_client()
    chain.rpc("evm_setAutomine", [False])
    frontend = Frontend(client)
    signer = Account.create()
    deadline = int(time.time()) + 120
    status, body = await frontend.submit(
        await frontend.build(signer, "too late", deadline=deadline)
    )
    assert status == 202, body
    await submitted(frontend, body["id"])
    chain.rpc("evm_setNextBlockTimestamp", [deadline + 60])  # the chain's clock, not ours
    chain.rpc("evm_mine")
    final = await confirmed(frontend, body["id"])
    assert final["status"] == "failed", final
    assert final["revertReason"].startswith("ERC2771ForwarderExpiredRequest("), final
    assert final["blockNumber"] is not None
    assert await guestbook.entries(signer.address) == 0
    chain.rpc("evm_setAutomine", [True])
    status, body = await frontend.submit(
        await frontend.build(signer, "on time", deadline=deadline + 3600)
    )
    assert status == 202, body  # the forwarder did not use the nonce: it is taken again
    assert (await confirmed(frontend, body["id"]))["status"] == "confirmed"


async def test_a_dropped_transaction_is_sent_again_before_any_bump(
    make_relay_client, chain, guestbook
):
    """The node lost a transaction (its pool emptied) while blocks went by: the same bytes
    are sent again, and they get a round to be mined before any replacement is signed."""
    frontend, signer, request_id, first = await stuck_request(
        make_relay_client, chain, "dropped once", GATEWAY_RELAY__BUMP_AFTER_BLOCKS="2"
    )
    chain.rpc("anvil_dropTransaction", [first["txHash"]])
    chain.rpc("evm_setAutomine", [True])
    chain.rpc("anvil_mine", ["0x3"])  # three blocks without it: past bump_after_blocks
    final = await confirmed(frontend, request_id)
    assert final["status"] == "confirmed", final
    assert final["attempts"] == 1, final["transactions"]
    assert final["txHash"] == first["txHash"]  # its very bytes
    assert await guestbook.entries(signer.address) == 1


async def test_a_receipt_served_late_is_not_a_nonce_taken_by_another(
    make_relay_client, chain, guestbook, aiohttp_server
):
    """A node that counts the relayer's nonce before it serves the receipt (anvil under load
    does; two nodes a moment apart do too) must not make the relay believe another sender
    took the nonce: sending the request again would execute it twice (the second reverting
    ERC2771ForwarderInvalidSigner) and end it `failed` though its note was written."""
    sent_at: dict[str, float] = {}

    async def late_receipts(_request: web.Request, body: dict) -> web.Response:
        if body["method"] == "eth_getTransactionReceipt":
            tx_hash = body["params"][0]
            if time.monotonic() - sent_at.get(tx_hash, 0.0) < 1.5:
                return web.json_response({"jsonrpc": "2.0", "id": body["id"], "result": None})
        result = chain.rpc(body["method"], body.get("params", []))
        if body["method"] == "eth_sendRawTransaction":
            sent_at[str(result)] = time.monotonic()
        return web.json_response({"jsonrpc": "2.0", "id": body["id"], "result": result})

    async def node(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        if isinstance(body, list):  # head polls: as anvil answers them
            replies = [await late_receipts(request, call) for call in body]
            return web.json_response([json.loads(r.body) for r in replies])
        return await late_receipts(request, body)

    app = web.Application()
    app.router.add_post("/", node)
    server = await aiohttp_server(app)
    client = await make_relay_client(GATEWAY_UPSTREAMS=f"http://127.0.0.1:{server.port}")
    frontend = Frontend(client)
    signer = Account.create()
    relayer = chain.accounts[RELAYER].address
    before = int(chain.rpc("eth_getTransactionCount", [relayer, "latest"]), 16)
    status, body = await frontend.submit(await frontend.build(signer, "once"))
    assert status == 202, body
    final = await confirmed(frontend, body["id"])
    assert final["status"] == "confirmed", final
    assert await guestbook.entries(signer.address) == 1
    assert int(chain.rpc("eth_getTransactionCount", [relayer, "latest"]), 16) == before + 1
