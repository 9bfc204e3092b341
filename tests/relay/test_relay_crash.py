"""kill -9 the gateway in the middle of relaying (at crash points, the exact step): after a
restart the request confirms with the transaction written before the crash, and the
relayer's nonces have no gap and no duplicate."""

from __future__ import annotations

import json
import signal
import sqlite3
import urllib.error
import urllib.request

import pytest
from eth_account import Account

from tests.helpers.processes import free_port, gateway_process, wait_http
from tests.helpers.waiting import wait_until
from tests.relay.conftest import RELAYER, relay_env, signed_body

pytestmark = pytest.mark.integration


def _call(url: str, payload: dict | None = None) -> tuple[int, dict]:
    data = None if payload is None else json.dumps(payload).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def signed_request(base: str, account, note: str) -> dict:
    _, info = _call(f"{base}/relay/forwarder?from={account.address}")
    return signed_body(info, account, note)


def _start(tmp_path, env: dict, name: str):
    port = free_port()
    process = gateway_process(["serve", "--port", str(port)], env, tmp_path / f"{name}.log")
    wait_http(f"http://127.0.0.1:{port}/readyz", timeout_s=60)
    return process, f"http://127.0.0.1:{port}"


def _env(tmp_path, chain, deployments, **extra) -> dict:
    return {
        **relay_env(chain, deployments),
        "GATEWAY_DATABASE_URL": f"sqlite:///{tmp_path / 'gw.db'}",
        "GATEWAY_IDENTITY__KEYS_DIR": str(tmp_path / "keys"),
        "GATEWAY_LOG_FORMAT": "json",
        **extra,
    }


def stored_versions(tmp_path) -> list[tuple[str, int]]:
    with sqlite3.connect(tmp_path / "gw.db") as db:
        return db.execute(
            "SELECT hash, relayer_nonce FROM relay_txs ORDER BY created_at"
        ).fetchall()


@pytest.mark.parametrize("point", ["relay.before_broadcast", "relay.after_broadcast"])
def test_kill_9_while_relaying_confirms_the_original_transaction(
    tmp_path, chain, deployments, point
):
    chain.rpc("evm_setAutomine", [False])
    env = _env(tmp_path, chain, deployments)
    process, base = _start(tmp_path, {**env, "GATEWAY_CRASH_POINT": point}, "first")
    signer = Account.create()
    status, body = _call(f"{base}/relay", signed_request(base, signer, f"survives {point}"))
    assert status == 202, body
    assert process.wait(20) == -signal.SIGKILL  # it died at the crash point, as kill -9 does
    [(tx_hash, nonce)] = stored_versions(tmp_path)  # written ahead, before the crash
    in_pool = chain.rpc("eth_getTransactionByHash", [tx_hash])
    assert (in_pool is None) == (point == "relay.before_broadcast")
    chain.rpc("evm_setAutomine", [True])
    chain.rpc("evm_mine")

    process, base = _start(tmp_path, env, "second")
    try:
        final = wait_until(
            lambda: (
                (found := _call(f"{base}/relay/{body['id']}")[1])["status"] == "confirmed" and found
            ),
            timeout_s=30,
            what="the request confirmed after the restart",
        )
        assert final["txHash"] == tx_hash  # the transaction written before the crash
        assert final["attempts"] == 1
        assert [v["hash"] for v in final["transactions"]] == [tx_hash]
        relayer = chain.accounts[RELAYER].address
        mined = int(chain.rpc("eth_getTransactionCount", [relayer, "latest"]), 16)
        pending = int(chain.rpc("eth_getTransactionCount", [relayer, "pending"]), 16)
        assert (mined, pending, nonce) == (1, 1, 0)  # no gap, no duplicate
    finally:
        process.kill()
        process.wait(10)
