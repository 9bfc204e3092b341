"""Many signers at once: 100 requests from 10 signers all confirmed, each signer's order
kept, the relayer's nonces contiguous; and with two replicas on one PostgreSQL, every
request sent exactly once."""

from __future__ import annotations

import asyncio

import pytest
from eth_account import Account

from gateway.app import create_app
from tests.conftest import backend_env
from tests.helpers.waiting import eventually
from tests.relay.conftest import RELAYER, Frontend

pytestmark = pytest.mark.integration

SIGNERS = 10
PER_SIGNER = 10


@pytest.fixture(name="database_env", params=["postgresql"])
def _database_env(request, tmp_path):
    return backend_env(request, tmp_path)


async def submit_all(frontends: list[Frontend], signers: list) -> list[str]:
    async def one_signer(index: int, signer) -> list[str]:
        frontend = frontends[index % len(frontends)]
        ids = []
        for number in range(PER_SIGNER):  # one signer's requests follow its nonces
            status, body = await frontend.submit(await frontend.build(signer, f"note {number}"))
            assert status == 202, body
            ids.append(body["id"])
        return ids

    batches = await asyncio.gather(*(one_signer(i, s) for i, s in enumerate(signers)))
    return [request_id for batch in batches for request_id in batch]


async def all_confirmed(frontend: Frontend, ids: list[str]) -> list[dict]:
    async def check():
        response = await frontend.client.get("/relay?status=confirmed&limit=100")
        items = (await response.json())["items"]
        return items if len(items) == len(ids) else None

    return await eventually(check, timeout_s=90, what=f"{len(ids)} requests confirmed")


async def check_outcome(chain, guestbook, signers, ids, confirmed_items) -> None:
    assert {item["id"] for item in confirmed_items} == set(ids)
    resent = [item for item in confirmed_items if item["attempts"] != 1]
    assert resent == [], resent  # sent once each (shown whole when not, with its versions)
    for signer in signers:
        assert await guestbook.entries(signer.address) == PER_SIGNER
        assert await guestbook.last_note(signer.address) == f"note {PER_SIGNER - 1}"
        mine = [item for item in confirmed_items if item["from"] == signer.address]
        order = sorted(mine, key=lambda item: int(item["nonce"]))
        blocks = [item["blockNumber"] for item in order]
        assert blocks == sorted(blocks)  # in the signer's nonce order
    relayer = chain.accounts[RELAYER].address
    sent = int(chain.rpc("eth_getTransactionCount", [relayer, "latest"]), 16)
    assert sent == len(ids)  # contiguous from 0: every nonce one request, none twice


async def test_two_replicas_send_every_request_once(
    aiohttp_client, make_settings, relay_env, spans, chain, guestbook
):
    clients = [
        await aiohttp_client(create_app(make_settings(**relay_env), span_exporters=[spans]))
        for _ in range(2)
    ]
    frontends = [Frontend(client) for client in clients]
    signers = [Account.create() for _ in range(SIGNERS)]
    ids = await submit_all(frontends, signers)
    confirmed_items = await all_confirmed(frontends[0], ids)
    await check_outcome(chain, guestbook, signers, ids, confirmed_items)


@pytest.mark.parametrize("database_env", ["sqlite"], indirect=True)
async def test_a_hundred_requests_from_ten_signers(relay_client, chain, guestbook):
    frontend = Frontend(relay_client)
    signers = [Account.create() for _ in range(SIGNERS)]
    ids = await submit_all([frontend], signers)
    confirmed_items = await all_confirmed(frontend, ids)
    await check_outcome(chain, guestbook, signers, ids, confirmed_items)
