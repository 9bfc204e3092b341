"""Fixtures for signed records: typed data, a deployed MerkleAnchor, a gateway on them."""

from __future__ import annotations

import time

import pytest
from eth_account import Account
from eth_account.messages import encode_typed_data

from gateway.app import create_app
from gateway.chain import DevChain
from tests.conftest import backend_env
from tests.helpers.chain import deploy
from tests.helpers.lane import LaneTestServer

ANCHOR_KEY_INDEX = 9
MAIL_TYPES = {
    "EIP712Domain": [
        {"name": "name", "type": "string"},
        {"name": "version", "type": "string"},
        {"name": "chainId", "type": "uint256"},
        {"name": "verifyingContract", "type": "address"},
    ],
    "Mail": [
        {"name": "from", "type": "address"},
        {"name": "to", "type": "address"},
        {"name": "contents", "type": "string"},
        {"name": "deadline", "type": "uint256"},
        {"name": "nonce", "type": "uint256"},
    ],
}
DOMAIN = {
    "name": "Ether Mail",
    "version": "1",
    "chainId": 31337,
    "verifyingContract": "0xCcCCccccCCCCcCCCCCCcCcCccCcCCCcCcccccccC",
}
_counter = iter(range(1, 10**9))


def mail(sender: str, to: str | None = None, contents: str = "hello", **overrides) -> dict:
    message = {
        "from": sender,
        "to": to or Account.create().address,
        "contents": contents,
        "deadline": int(time.time()) + 3600,
        "nonce": next(_counter),
    }
    message.update(overrides.pop("message", {}))
    typed = {"types": MAIL_TYPES, "primaryType": "Mail", "domain": dict(DOMAIN), "message": message}
    typed.update(overrides)
    return typed


def sign_typed(account, typed: dict) -> str:
    return account.sign_message(encode_typed_data(full_message=typed)).signature.to_0x_hex()


@pytest.fixture(name="chain")
def _chain(tmp_path):
    with DevChain.start(log_dir=tmp_path / "anvil-records") as chain:
        yield chain


@pytest.fixture(name="anchor_contract")
def _anchor_contract(chain):
    owner = chain.accounts[ANCHOR_KEY_INDEX].address
    return deploy(chain, "MerkleAnchor", ["address"], [owner])


@pytest.fixture(name="records_env")
def _records_env(chain, anchor_contract):
    return {
        "GATEWAY_CHAIN_ID": "31337",
        "GATEWAY_ANCHOR__PRIVATE_KEY": chain.accounts[ANCHOR_KEY_INDEX].private_key,
        "GATEWAY_ANCHOR__CONTRACT_ADDRESS": anchor_contract,
        "GATEWAY_ANCHOR__INTERVAL_S": "3600",  # tests anchor on demand
        "GATEWAY_RPC__HEALTH_INTERVAL_S": "0.5",
        "GATEWAY_SIWE_DOMAINS": "app.example",
        "GATEWAY_IDENTITY__COOKIE_SECURE": "false",
    }


@pytest.fixture(name="records_client")
async def _records_client(aiohttp_client, chain, make_settings, records_env, spans):
    settings = make_settings(upstreams=[chain.url], **records_env)
    return await aiohttp_client(LaneTestServer(create_app(settings, span_exporters=[spans])))


@pytest.fixture(name="database_env", params=["sqlite", "postgresql"])
def _database_env(request, tmp_path):
    """This suite runs on the embedded SQLite and on a private PostgreSQL."""
    return backend_env(request, tmp_path)
