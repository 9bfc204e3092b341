"""Gasless requests end to end on anvil: signed by a wallet with no ETH, relayed, confirmed,
and the target sees the signer (not the relayer) as the sender."""

from __future__ import annotations

import pytest
from eth_account import Account

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
