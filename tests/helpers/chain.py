"""Deploy the project's compiled contracts to a test anvil, with its unlocked dev account."""

from __future__ import annotations

import time

from eth_abi import encode

from gateway.chain import DevChain
from gateway.chain.artifacts import load_artifact


def wait_receipt(chain: DevChain, tx_hash: str, timeout_s: float = 10) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        receipt = chain.rpc("eth_getTransactionReceipt", [tx_hash])
        if receipt:
            assert isinstance(receipt, dict)
            return receipt
        time.sleep(0.05)
    raise TimeoutError(tx_hash)


def deploy(
    chain: DevChain, name: str, types: list[str] | None = None, args: list | None = None
) -> str:
    """Deploy contract ``name`` with constructor ``args``; returns its address."""
    bytecode = load_artifact(name)["bytecode"]
    data = bytecode + (encode(types, args).hex() if types else "")
    tx = chain.rpc("eth_sendTransaction", [{"from": chain.accounts[0].address, "data": data}])
    receipt = wait_receipt(chain, str(tx))
    assert receipt["status"] == "0x1", receipt
    return str(receipt["contractAddress"])


def call(chain: DevChain, to: str, data: bytes) -> bytes:
    result = chain.rpc("eth_call", [{"to": to, "data": "0x" + data.hex()}, "latest"])
    return bytes.fromhex(str(result)[2:])


def transact(chain: DevChain, to: str, data: bytes) -> dict:
    tx = chain.rpc(
        "eth_sendTransaction",
        [{"from": chain.accounts[0].address, "to": to, "data": "0x" + data.hex()}],
    )
    return wait_receipt(chain, str(tx))
