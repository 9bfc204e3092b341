"""Gasless requests end to end on anvil: signed by a wallet with no ETH, relayed, confirmed,
and the target sees the signer (not the relayer) as the sender."""

from __future__ import annotations

import pytest
from eth_account import Account
from web3 import Web3

from tests.helpers.waiting import eventually
from tests.relay.conftest import RELAYER, Frontend

pytestmark = pytest.mark.integration


async def confirmed(frontend: Frontend, request_id: str, timeout_s: float = 20) -> dict:
    async def final():
        status = await frontend.status(request_id)
        return (
            status if status["status"] in ("confirmed", "failed", "expired", "canceled") else None
        )

    return await eventually(final, timeout_s=timeout_s, what=f"{request_id} final")


async def test_a_request_signed_without_eth_is_confirmed_as_the_signer(
    relay_client, guestbook, chain
):
    frontend = Frontend(relay_client)
    signer = Account.create()
    status, body = await frontend.submit(await frontend.build(signer, "gasless hello"))
    assert status == 202, body
    assert body["status"] == "pending"
    final = await confirmed(frontend, body["id"])
    assert final["status"] == "confirmed", final
    assert final["txHash"].startswith("0x")
    assert final["blockNumber"] > 0
    assert final["attempts"] == 1
    assert await guestbook.entries(signer.address) == 1
    assert await guestbook.last_note(signer.address) == "gasless hello"
    assert await guestbook.entries(chain.accounts[RELAYER].address) == 0
    assert chain.rpc("eth_getBalance", [signer.address, "latest"]) == "0x0"
    info = await frontend.info(signer.address)
    assert info["nextNonce"] == "1"


async def test_an_eip1271_wallet_is_the_sender(relay_client, guestbook, chain):
    from types import SimpleNamespace

    from tests.helpers.chain import deploy

    owner = Account.create()
    wallet = Web3.to_checksum_address(
        deploy(chain, "TestSmartWallet", ["address"], [owner.address])
    )
    frontend = Frontend(relay_client)
    body = await frontend.build(
        SimpleNamespace(address=wallet), "from a contract wallet", signed_by=owner
    )
    status, accepted = await frontend.submit(body)
    assert status == 202, accepted
    assert accepted["walletType"] == "contract"
    final = await confirmed(frontend, accepted["id"])
    assert final["status"] == "confirmed", final
    assert await guestbook.entries(wallet) == 1
    assert await guestbook.entries(owner.address) == 0


async def test_requests_of_one_signer_queue_in_nonce_order(relay_client, guestbook, chain):
    chain.rpc("evm_setAutomine", [False])
    frontend = Frontend(relay_client)
    signer = Account.create()
    ids = []
    for index in range(3):  # the next nonce counts the queued requests
        status, body = await frontend.submit(await frontend.build(signer, f"note {index}"))
        assert status == 202, body
        assert body["nonce"] == str(index)
        ids.append(body["id"])
    await eventually(lambda: all_status(frontend, ids, "submitted"), what="all three submitted")
    chain.rpc("evm_mine")
    finals = [await confirmed(frontend, request_id) for request_id in ids]
    assert [final["status"] for final in finals] == ["confirmed"] * 3
    nonces = [final["transactions"][0]["nonce"] for final in finals]
    assert nonces == sorted(nonces) == list(range(nonces[0], nonces[0] + 3))
    assert await guestbook.entries(signer.address) == 3
    assert await guestbook.last_note(signer.address) == "note 2"


async def all_status(frontend: Frontend, ids: list[str], status: str) -> bool:
    statuses = [(await frontend.status(request_id))["status"] for request_id in ids]
    return statuses == [status] * len(ids)


async def test_the_request_and_the_sending_are_one_story_in_traces(make_relay_client, spans):
    client = await make_relay_client(OTEL_TRACES_SAMPLER="always_on")
    frontend = Frontend(client)
    status, body = await frontend.submit(await frontend.build(Account.create(), "traced"))
    assert status == 202, body
    assert (await confirmed(frontend, body["id"]))["status"] == "confirmed"

    def named(name: str) -> list:
        return [span for span in spans.get_finished_spans() if span.name == name]

    server = next(s for s in named("POST /relay"))
    trace_id = server.context.trace_id
    for name in ("relay.verify", "relay.simulate"):  # in the request's own trace
        assert any(span.context.trace_id == trace_id for span in named(name)), name
    sends = [s for s in named("relay.send") if any(l.context.trace_id == trace_id for l in s.links)]
    assert sends  # the sender's work links back to the request that asked for it
    confirms = named("relay.confirm")
    assert any(span.attributes.get("relay.request_id") == body["id"] for span in confirms)
