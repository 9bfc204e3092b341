"""Gasless requests on a gateway of two networks: each chain's forwarder, the same relayer
key with its own nonces on each chain, and a kill -9 on one network that loses nothing."""

from __future__ import annotations

import json
import signal
import sqlite3
from pathlib import Path

import pytest
from eth_abi import encode
from eth_account import Account
from eth_utils import function_signature_to_4byte_selector

from gateway.chain.deploy import read_deployments
from tests.conftest import SECOND_CHAIN_ID
from tests.helpers.chain import call
from tests.helpers.waiting import wait_until
from tests.relay.conftest import RELAYER, TARGETS, deploy_relay, signed_body
from tests.relay.test_relay_crash import _call, _start

pytestmark = pytest.mark.integration

ENTRIES = function_signature_to_4byte_selector("entries(address)")


@pytest.fixture(name="two_deployments")
async def _two_deployments(chain, chain_b, tmp_path: Path) -> Path:
    """GatewayForwarder and Guestbook on both chains, recorded per chain id in one file."""
    path = tmp_path / "deployments.json"
    for each in (chain, chain_b):
        await deploy_relay(each, path)
    return path


def _env(tmp_path: Path, chain, chain_b, deployments: Path, **extra: str) -> dict[str, str]:
    networks = [
        {"chain_id": each.chain_id, "alias": alias, "upstreams": [{"url": each.url}]}
        for each, alias in ((chain, "first"), (chain_b, "second"))
    ]
    return {
        "GATEWAY_NETWORKS": json.dumps(networks),
        "GATEWAY_ANCHOR__ENABLED": "false",
        "GATEWAY_ANCHOR__DEPLOYMENTS_FILE": str(deployments),
        "GATEWAY_RELAY__PRIVATE_KEY": chain.accounts[RELAYER].private_key,
        "GATEWAY_RELAY__TARGETS": TARGETS,
        "GATEWAY_RELAY__POLL_INTERVAL_S": "0.05",
        "GATEWAY_DATABASE_URL": f"sqlite:///{tmp_path / 'gw.db'}",
        "GATEWAY_IDENTITY__KEYS_DIR": str(tmp_path / "keys"),
        "GATEWAY_LOG_FORMAT": "json",
        **extra,
    }


def _request(base: str, account, note: str, chain_id: int) -> dict:
    """What a dApp on that chain sends: built from /relay/forwarder?chainId= alone, with
    the domain it signed."""
    status, info = _call(f"{base}/relay/forwarder?chainId={chain_id}&from={account.address}")
    assert status == 200, info
    assert info["domain"]["chainId"] == chain_id
    return {**signed_body(info, account, note), "domain": info["domain"]}


def _confirmed(base: str, request_id: str) -> dict:
    return wait_until(
        lambda: (
            (found := _call(f"{base}/relay/{request_id}")[1])["status"] == "confirmed" and found
        ),
        timeout_s=30,
        what=f"{request_id} confirmed",
    )


def _nonces(chain) -> tuple[int, int]:
    relayer = chain.accounts[RELAYER].address
    mined = int(chain.rpc("eth_getTransactionCount", [relayer, "latest"]), 16)
    pending = int(chain.rpc("eth_getTransactionCount", [relayer, "pending"]), 16)
    return mined, pending


def test_requests_on_each_chain_and_a_kill_9_on_one_lose_nothing(
    tmp_path, chain, chain_b, two_deployments
):
    env = _env(tmp_path, chain, chain_b, two_deployments)
    point = f"relay.after_broadcast@{SECOND_CHAIN_ID}"  # only the second network's sender
    process, base = _start(tmp_path, {**env, "GATEWAY_CRASH_POINT": point}, "first")
    try:
        status, unknown = _call(f"{base}/relay/forwarder?chainId=5")
        assert status == 404
        assert unknown["error"]["code"] == "relay.unknown_chain"
        signer = Account.create()
        # On the first chain: one request confirmed, one sent and waiting in the pool.
        status, first = _call(f"{base}/relay", _request(base, signer, "one", chain.chain_id))
        assert status == 202, first
        assert _confirmed(base, first["id"])["chainId"] == chain.chain_id
        chain.rpc("evm_setAutomine", [False])
        status, waiting = _call(f"{base}/relay", _request(base, signer, "two", chain.chain_id))
        assert status == 202, waiting
        wait_until(
            lambda: _call(f"{base}/relay/{waiting['id']}")[1]["status"] == "submitted",
            timeout_s=20,
            what="the first chain's second request broadcast",
        )
        # On the second chain: the sender dies right after its broadcast.
        chain_b.rpc("evm_setAutomine", [False])
        status, dying = _call(f"{base}/relay", _request(base, signer, "three", SECOND_CHAIN_ID))
        assert status == 202, dying
        assert process.wait(20) == -signal.SIGKILL
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)

    for each in (chain, chain_b):
        each.rpc("evm_setAutomine", [True])
        each.rpc("evm_mine")
    process, base = _start(tmp_path, env, "second")
    try:
        for request, on in ((waiting, chain), (dying, chain_b)):
            final = _confirmed(base, request["id"])
            assert final["chainId"] == on.chain_id
            assert final["attempts"] == 1  # the transaction written before the crash
        # The same relayer key, its own nonces on each chain: no gap, no duplicate.
        assert _nonces(chain) == (2, 2)
        assert _nonces(chain_b) == (1, 1)
        with sqlite3.connect(tmp_path / "gw.db") as db:
            stored = db.execute(
                "SELECT chain_id, relayer_nonce FROM relay_txs ORDER BY chain_id, relayer_nonce"
            ).fetchall()
        assert stored == [(chain.chain_id, 0), (chain.chain_id, 1), (SECOND_CHAIN_ID, 0)]
        # Each chain's Guestbook got its entries through that chain's forwarder.
        deployed = read_deployments(two_deployments)
        for on, entries in ((chain, 2), (chain_b, 1)):
            book = deployed[str(on.chain_id)]["Guestbook"]
            asked = ENTRIES + encode(["address"], [signer.address])
            assert int.from_bytes(call(on, book, asked), "big") == entries
    finally:
        process.kill()
        process.wait(10)
