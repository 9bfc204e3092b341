"""A fresh anvil per test with the forwarder and the Guestbook deployed, a gateway with a
relayer key on it, and a frontend that builds requests from GET /relay/forwarder alone."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from eth_abi import abi
from eth_account import Account
from web3 import AsyncHTTPProvider, AsyncWeb3

from gateway.app import create_app
from gateway.chain import DevChain
from gateway.chain.artifacts import load_artifact
from gateway.chain.deploy import deploy_relay_contracts, read_deployments
from gateway.relay.forward import selector_of
from tests.conftest import backend_env

RELAYER = 7  # anvil dev account paying for gas (no other test uses it)
DEPLOYER = 0
TARGETS = '{"Guestbook": ["sign(string)"]}'


@pytest.fixture(name="chain")
def _chain(tmp_path: Path):
    with DevChain.start(log_dir=tmp_path / "anvil-relay") as chain:
        yield chain


@pytest.fixture(name="deployments")
async def _deployments(chain: DevChain, tmp_path: Path) -> Path:
    path = tmp_path / "deployments.json"
    await deploy_relay(chain, path)
    return path


async def deploy_relay(chain: DevChain, deployments: Path) -> None:
    """The forwarder and the Guestbook on ``chain``, recorded under its chain id."""
    w3 = AsyncWeb3(AsyncHTTPProvider(chain.url))
    try:
        await deploy_relay_contracts(
            w3, Account.from_key(chain.accounts[DEPLOYER].private_key), deployments
        )
    finally:
        await w3.provider.disconnect()


@pytest.fixture(name="relay_env")
def _relay_env(chain: DevChain, deployments: Path) -> dict[str, str]:
    return relay_env(chain, deployments)


def relay_env(chain: DevChain, deployments: Path, **extra: str) -> dict[str, str]:
    return {
        "GATEWAY_UPSTREAMS": chain.url,
        "GATEWAY_CHAIN_ID": str(chain.chain_id),
        "GATEWAY_ANCHOR__ENABLED": "false",
        "GATEWAY_ANCHOR__DEPLOYMENTS_FILE": str(deployments),
        "GATEWAY_RELAY__PRIVATE_KEY": chain.accounts[RELAYER].private_key,
        "GATEWAY_RELAY__TARGETS": TARGETS,
        "GATEWAY_RELAY__POLL_INTERVAL_S": "0.05",
        "GATEWAY_SIWE_DOMAINS": "app.example",
        **extra,
    }


@pytest.fixture(name="make_relay_client")
def _make_relay_client(aiohttp_client, make_settings, relay_env, spans):
    async def make(**extra: str):
        settings = make_settings(**{**relay_env, **extra})
        return await aiohttp_client(create_app(settings, span_exporters=[spans]))

    return make


@pytest.fixture(name="relay_client")
async def _relay_client(make_relay_client):
    return await make_relay_client()


def deployed(deployments: Path, name: str) -> str:
    return next(iter(read_deployments(deployments).values()))[name]


def guestbook_call(note: str) -> str:
    return (
        "0x"
        + (bytes.fromhex(selector_of("sign(string)")[2:]) + abi.encode(["string"], [note])).hex()
    )


def signed_body(info: dict, account: Any, note: str, **overrides: Any) -> dict:
    """The POST /relay body a dApp makes from GET /relay/forwarder's answer alone."""
    signer = overrides.pop("signed_by", account)
    message = {
        "from": account.address,
        "to": info["targets"][0]["address"],
        "value": 0,
        "gas": 150_000,
        "nonce": int(info["nextNonce"]),
        "deadline": int(time.time()) + 3600,
        "data": guestbook_call(note),
        **overrides,
    }
    typed = {
        "types": info["types"],
        "primaryType": info["primaryType"],
        "domain": info["domain"],
        "message": message,
    }
    signature = signer.sign_typed_data(full_message=typed).signature.to_0x_hex()
    return {"request": message, "signature": signature}


class Frontend:
    """What a dApp does: asks the gateway for the forwarder's domain and the signer's next
    nonce, has the wallet sign the ForwardRequest, and POSTs it."""

    def __init__(self, client: Any) -> None:
        self.client = client

    async def info(self, address: str) -> dict:
        response = await self.client.get(f"/relay/forwarder?from={address}")
        assert response.status == 200, await response.text()
        return await response.json()

    async def build(self, account: Any, note: str = "hello", **overrides: Any) -> dict:
        """A signed request of ``account``; ``signed_by`` signs it with another key, and any
        other keyword replaces that field of the request before it is signed."""
        return signed_body(await self.info(account.address), account, note, **overrides)

    async def submit(self, body: dict, headers: dict | None = None) -> tuple[int, dict]:
        response = await self.client.post("/relay", json=body, headers=headers or {})
        return response.status, await response.json()

    async def status(self, request_id: str) -> dict:
        response = await self.client.get(f"/relay/{request_id}")
        assert response.status == 200, await response.text()
        return await response.json()


class Guestbook:
    def __init__(self, chain: DevChain, deployments: Path) -> None:
        self.w3 = AsyncWeb3(AsyncHTTPProvider(chain.url))
        self.contract = self.w3.eth.contract(
            address=deployed(deployments, "Guestbook"), abi=load_artifact("Guestbook")["abi"]
        )

    async def entries(self, address: str) -> int:
        return await self.contract.functions.entries(address).call()

    async def last_note(self, address: str) -> str:
        return await self.contract.functions.lastNote(address).call()


@pytest.fixture(name="guestbook")
async def _guestbook(chain, deployments):
    book = Guestbook(chain, deployments)
    yield book
    await book.w3.provider.disconnect()


@pytest.fixture(name="database_env", params=["sqlite"])
def _database_env(request, tmp_path):
    return backend_env(request, tmp_path)
