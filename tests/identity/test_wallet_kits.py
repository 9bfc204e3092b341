"""What wallet kits (RainbowKit, AppKit SIWE, ConnectKit) expect of a sign-in backend."""

import re

import pytest
from eth_account import Account

from gateway.identity.siwe import parse_message
from tests.identity.conftest import DOMAIN, ORIGIN, personal_sign

pytestmark = pytest.mark.integration

NONCE = re.compile(r"[a-zA-Z0-9]{8,}")  # what viem's createSiweMessage accepts


@pytest.fixture(name="database_env")
def _database_env(tmp_path):
    """These conventions do not depend on the backend: the embedded one."""
    return {"GATEWAY_DATABASE_URL": f"sqlite:///{tmp_path / 'gw.db'}"}


async def test_the_nonce_as_plain_text_when_asked(client):
    plain = await client.get("/auth/nonce", headers={"Accept": "text/plain"})
    assert plain.status == 200
    assert plain.content_type == "text/plain"
    assert NONCE.fullmatch(await plain.text())
    default = await client.get("/auth/nonce")
    assert default.content_type == "application/json"
    assert NONCE.fullmatch((await default.json())["nonce"])


async def test_the_server_writes_a_message_the_wallet_signs_and_it_signs_in(client, flow):
    account = Account.create()
    response = await client.post(
        "/auth/message",
        json={
            "address": account.address.lower(),
            "chainId": 31337,
            "statement": "Sign in to the example dApp.",
            "resources": ["https://app.example/terms"],
        },
        headers={"Origin": ORIGIN},
    )
    assert response.status == 200, await response.text()
    text = (await response.json())["message"]
    message = parse_message(text)
    assert (message.domain, message.address, message.chain_id) == (DOMAIN, account.address, 31337)
    assert message.uri == f"{ORIGIN}/"
    assert NONCE.fullmatch(message.nonce)
    assert message.resources == ("https://app.example/terms",)
    assert message.expiration_time is not None
    signed_in = await flow.verify(text, personal_sign(account, text))
    assert signed_in.status == 200, await signed_in.text()
    assert (await signed_in.json())["address"] == account.address


async def test_the_message_as_plain_text_when_asked(client):
    response = await client.post(
        "/auth/message",
        json={"address": Account.create().address, "chainId": 31337},
        headers={"Origin": ORIGIN, "Accept": "text/plain"},
    )
    assert response.status == 200
    assert response.content_type == "text/plain"
    assert parse_message(await response.text()).domain == DOMAIN


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"address": "0x1234", "chainId": 31337}, "request.invalid_params"),
        ({"address": "0x" + "ab" * 20, "chainId": 0}, "request.invalid_params"),
        ({"address": "0x" + "ab" * 20}, "request.invalid_params"),
        ({"address": "0x" + "ab" * 20, "chainId": 1}, "siwe.chain.not_allowed"),
        ({"address": "0x" + "ab" * 20, "chainId": 31337, "statement": "bad\nline"}, None),
        ({"address": "0x" + "ab" * 20, "chainId": 31337, "resources": ["not a uri"]}, None),
        ({"address": "0x" + "ab" * 20, "chainId": 31337, "statement": "x" * 5000}, None),
    ],
)
async def test_a_message_that_would_not_be_accepted_is_not_written(client, body, code):
    response = await client.post("/auth/message", json=body, headers={"Origin": ORIGIN})
    assert response.status == 422, await response.text()
    error = (await response.json())["error"]
    if code is not None:
        assert error["code"] == code
    assert "Traceback" not in error["message"]


async def test_logout_by_get_ends_the_session(client, flow):
    token = (await flow.sign_in(Account.create()))["token"]
    auth = {"Authorization": f"Bearer {token}"}
    assert (await client.get("/auth/session", headers=auth)).status == 200
    assert (await client.get("/auth/logout", headers=auth)).status == 204
    assert (await client.get("/auth/session", headers=auth)).status == 401
    assert (await client.get("/auth/logout")).status == 401  # no session: never a 2xx
