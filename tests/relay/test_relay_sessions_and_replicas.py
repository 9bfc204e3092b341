"""Who may submit and cancel when sessions count, and the per-signer quota shared by
replicas through Redis."""

from __future__ import annotations

import pytest
from eth_account import Account

from gateway.app import create_app
from tests.identity.conftest import ORIGIN, make_message, personal_sign
from tests.relay.conftest import Frontend

pytestmark = pytest.mark.integration


async def sign_in(client, account) -> str:
    nonce = (await (await client.get("/auth/nonce")).json())["nonce"]
    text = make_message(account.address, nonce)
    response = await client.post(
        "/auth/verify",
        json={"message": text, "signature": personal_sign(account, text)},
        headers={"Origin": ORIGIN},
    )
    assert response.status == 200, await response.text()
    return (await response.json())["token"]


async def test_with_sessions_required_only_the_signer_submits_and_cancels(make_relay_client, chain):
    client = await make_relay_client(GATEWAY_RELAY__REQUIRE_SESSION="true")
    frontend = Frontend(client)
    signer, other = Account.create(), Account.create()
    body = await frontend.build(signer, "mine")
    other_token = await sign_in(client, other)
    status, refused = await frontend.submit(body, {"Authorization": f"Bearer {other_token}"})
    assert (status, refused["error"]["code"]) == (403, "relay.not_signer")

    chain.rpc("evm_setAutomine", [False])  # it waits in the pool: cancellable
    token = await sign_in(client, signer)
    status, accepted = await frontend.submit(body, {"Authorization": f"Bearer {token}"})
    assert status == 202, accepted
    by_other = await client.delete(
        f"/relay/{accepted['id']}", headers={"Authorization": f"Bearer {other_token}"}
    )
    assert (by_other.status, (await by_other.json())["error"]["code"]) == (
        403,
        "relay.not_signer",
    )
    by_signer = await client.delete(
        f"/relay/{accepted['id']}", headers={"Authorization": f"Bearer {token}"}
    )
    assert by_signer.status == 202
    assert (await by_signer.json())["cancelRequested"] is True


@pytest.mark.parametrize("database_env", ["postgresql"], indirect=True)  # replicas share it
async def test_the_hourly_quota_is_shared_by_replicas_through_redis(
    aiohttp_client, make_settings, relay_env, redis_server, chain
):
    env = {**relay_env, "GATEWAY_REDIS__URL": redis_server, "GATEWAY_RELAY__REQUESTS_PER_HOUR": "2"}
    replicas = [Frontend(await aiohttp_client(create_app(make_settings(**env)))) for _ in range(2)]
    signer = Account.create()
    for index, frontend in enumerate(replicas):  # one on each replica: both within quota
        status, body = await frontend.submit(await frontend.build(signer, f"n{index}"))
        assert status == 202, body
    status, body = await replicas[0].submit(await replicas[0].build(signer, "third"))
    assert (status, body["error"]["code"]) == (429, "relay.quota_exceeded")
