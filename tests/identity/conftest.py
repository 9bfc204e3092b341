"""Fixtures for sign-in tests: a gateway accepting app.example on the anvil chain."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from eth_account import Account
from eth_account.messages import encode_defunct

from gateway.app import create_app
from gateway.identity.siwe import SiweMessage
from tests.conftest import backend_env

DOMAIN = "app.example"
ORIGIN = f"https://{DOMAIN}"


def now_rfc3339(delta_s: float = 0) -> str:
    moment = datetime.now(UTC) + timedelta(seconds=delta_s)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def make_message(address: str, nonce: str, **overrides) -> str:
    fields = {
        "scheme": "https",
        "domain": DOMAIN,
        "address": address,
        "statement": "Sign in to the example dApp.",
        "uri": f"{ORIGIN}/login",
        "chain_id": 31337,
        "nonce": nonce,
        "issued_at": now_rfc3339(),
        "expiration_time": now_rfc3339(600),
    }
    fields.update(overrides)
    return SiweMessage(**fields).to_text()


def personal_sign(account, text: str) -> str:
    return account.sign_message(encode_defunct(text=text)).signature.to_0x_hex()


@pytest.fixture(name="auth_env")
def _auth_env(anvil):
    return {
        "GATEWAY_SIWE_DOMAINS": DOMAIN,
        "GATEWAY_CHAIN_ID": str(anvil.chain_id),
        "GATEWAY_IDENTITY__COOKIE_SECURE": "false",
    }


@pytest.fixture(name="client")
async def _client(aiohttp_client, anvil, make_settings, spans, auth_env):
    settings = make_settings(upstreams=[anvil.url], **auth_env)
    return await aiohttp_client(create_app(settings, span_exporters=[spans]))


@pytest.fixture(name="wallet")
def _wallet():
    return Account.create()


class SignInFlow:
    """Drives /auth/nonce and /auth/verify like a dApp frontend would."""

    def __init__(self, client) -> None:
        self.client = client

    async def nonce(self) -> str:
        response = await self.client.get("/auth/nonce")
        assert response.status == 200, await response.text()
        return (await response.json())["nonce"]

    async def verify(self, message: str, signature: str, *, origin: str | None = ORIGIN):
        headers = {"Origin": origin} if origin else {}
        return await self.client.post(
            "/auth/verify", json={"message": message, "signature": signature}, headers=headers
        )

    async def sign_in(self, account, **overrides) -> dict:
        text = make_message(account.address, await self.nonce(), **overrides)
        response = await self.verify(text, personal_sign(account, text))
        assert response.status == 200, await response.text()
        return await response.json()


@pytest.fixture(name="flow")
def _flow(client) -> SignInFlow:
    return SignInFlow(client)


@pytest.fixture(name="database_env", params=["sqlite", "postgresql", "redis"])
def _database_env(request, tmp_path):
    """This suite runs on the embedded SQLite and on a private PostgreSQL."""
    return backend_env(request, tmp_path)
