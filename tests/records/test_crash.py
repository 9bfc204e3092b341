"""kill -9 the gateway: acknowledged records survive; an anchor batch is confirmed once."""

import json
import signal
import sqlite3
import urllib.request

import pytest
from eth_account import Account

from tests.helpers.metrics import sample
from tests.helpers.processes import free_port, gateway_process, wait_http
from tests.helpers.waiting import wait_until
from tests.records.conftest import ANCHOR_KEY_INDEX, mail, sign_typed

pytestmark = pytest.mark.integration


def _post(url: str, payload: dict) -> tuple[int, dict]:
    request = urllib.request.Request(
        url, data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.status, json.loads(response.read())


def _get(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def _env(tmp_path, chain, **extra) -> dict:
    return {
        "GATEWAY_UPSTREAMS": chain.url,
        "GATEWAY_CHAIN_ID": "31337",
        "GATEWAY_DATABASE_URL": f"sqlite:///{tmp_path / 'gw.db'}",
        "GATEWAY_IDENTITY__KEYS_DIR": str(tmp_path / "keys"),
        "GATEWAY_LOG_FORMAT": "json",
        **extra,
    }


def _stop(process) -> None:
    process.kill()
    process.wait(10)


def _anchor_rounds(base: str) -> float:
    """Anchoring rounds so far: each asks storage for unfinished batches once."""
    with urllib.request.urlopen(f"{base}/metrics", timeout=10) as response:
        text = response.read().decode()
    labels = {"backend": "sqlite", "op": "anchor.unfinished", "outcome": "ok"}
    return sample(text, "gateway_storage_operations_total", **labels) or 0.0


def _start(tmp_path, env, name):
    port = free_port()
    process = gateway_process(["serve", "--port", str(port)], env, tmp_path / f"{name}.log")
    wait_http(f"http://127.0.0.1:{port}/readyz", timeout_s=60)
    return process, f"http://127.0.0.1:{port}"


def test_acknowledged_records_survive_kill_9(tmp_path, chain):
    env = _env(tmp_path, chain, GATEWAY_ANCHOR__ENABLED="false")
    process, base = _start(tmp_path, env, "first")
    alice = Account.create()
    ids = []
    try:
        for index in range(25):
            typed = mail(alice.address, contents=f"record {index}")
            status, body = _post(
                f"{base}/records", {"typedData": typed, "signature": sign_typed(alice, typed)}
            )
            assert status == 201
            ids.append(body["id"])
        process.send_signal(signal.SIGKILL)  # no chance to flush or close anything
        process.wait(10)
    finally:
        _stop(process)
    process, base = _start(tmp_path, env, "second")
    try:
        for record_id in ids:
            status, body = _get(f"{base}/records/{record_id}")
            assert status == 200
            assert body["id"] == record_id
    finally:
        _stop(process)


def test_crash_between_sending_and_receipt_anchors_once(tmp_path, chain, anchor_contract):
    anchor_key = chain.accounts[ANCHOR_KEY_INDEX]
    env = _env(
        tmp_path,
        chain,
        GATEWAY_ANCHOR__PRIVATE_KEY=anchor_key.private_key,
        GATEWAY_ANCHOR__CONTRACT_ADDRESS=anchor_contract,
        GATEWAY_ANCHOR__INTERVAL_S="0.3",
        GATEWAY_ANCHOR__RECEIPT_TIMEOUT_S="600",
    )
    chain.rpc("evm_setAutomine", [False])  # transactions wait in the mempool
    process, base = _start(tmp_path, env, "first")
    alice = Account.create()
    try:
        typed = mail(alice.address)
        status, body = _post(
            f"{base}/records", {"typedData": typed, "signature": sign_typed(alice, typed)}
        )
        assert status == 201
        record_id = body["id"]

        def sent() -> tuple | None:  # the batch is sent and awaits its receipt
            with sqlite3.connect(tmp_path / "gw.db") as db:
                row = db.execute("SELECT status, tx_hash FROM anchor_batches").fetchone()
            if row and row[0] == "sent" and chain.rpc("eth_getTransactionByHash", [row[1]]):
                return row
            return None

        tx_hash = wait_until(sent, timeout_s=30, what="the anchor transaction sent")[1]
        process.send_signal(signal.SIGKILL)
        process.wait(10)
    finally:
        _stop(process)
    chain.rpc("evm_mine")  # the transaction the dead gateway sent is mined now
    chain.rpc("evm_setAutomine", [True])
    process, base = _start(tmp_path, env, "second")
    try:
        status, proof = wait_until(
            lambda: (found := _get(f"{base}/records/{record_id}/proof"))[0] == 200 and found,
            timeout_s=30,
            what="the proof",
        )
        assert proof["txHash"] == tx_hash  # the batch's own transaction, not a second one
        rounds = _anchor_rounds(base)  # a few more anchorer rounds: none may send again
        wait_until(lambda: _anchor_rounds(base) >= rounds + 3, what="three more rounds")
        assert chain.rpc("eth_getTransactionCount", [anchor_key.address, "latest"]) == "0x1"
        assert chain.rpc("eth_getTransactionCount", [anchor_key.address, "pending"]) == "0x1"
        with sqlite3.connect(tmp_path / "gw.db") as db:
            assert db.execute("SELECT count(*), min(status) FROM anchor_batches").fetchone() == (
                1,
                "confirmed",
            )
    finally:
        _stop(process)
