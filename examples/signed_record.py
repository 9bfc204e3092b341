"""Sign an EIP-712 record, submit it to a running gateway, wait for its anchor, and check
its Merkle proof twice: in Python and with the anchor contract's ``verify`` on chain.

    .venv/bin/python examples/signed_record.py [http://127.0.0.1:8080] [0xPRIVATE_KEY]

Defaults to `make dev`'s gateway (which anchors every 5 seconds) and anvil's first public
dev key (never use it on a real chain). The on-chain check is an ``eth_call`` through the
gateway's own /rpc here; point it at any node of the chain to trust nobody but the chain.
"""

from __future__ import annotations

import json
import os
import secrets
import sys
import time
import urllib.error
import urllib.request
from typing import Any

from eth_account import Account
from eth_account.messages import encode_typed_data
from web3 import Web3

from gateway.chain.artifacts import load_artifact
from gateway.records.merkle import leaf_of, verify

DEV_KEY = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"  # anvil's #0
DEFAULT_URL = (
    "http://127.0.0.1:8080"  # make dev's gateway (GATEWAY_URL or the first argument: another)
)


def call(method: str, url: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
    headers = {"Content-Type": "application/json"}
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def checked(method: str, url: str, body: dict[str, Any] | None = None) -> Any:  # noqa: ANN401
    status, reply = call(method, url, body)
    if status >= 400:  # the gateway's JSON error says why
        sys.exit(f"{method} {url}: {status} {json.dumps(reply)}")
    return reply


def expect(condition: bool, problem: str) -> None:
    if not condition:
        sys.exit(problem)


def listed_ids(base: str, signer: str) -> list[str]:
    """Every record id of ``signer``, page by page (in the order they were received)."""
    ids: list[str] = []
    cursor = ""
    while True:
        page = checked("GET", f"{base}/records?signer={signer}&limit=100{cursor}")
        ids += [item["id"] for item in page["items"]]
        if page["nextCursor"] is None:
            return ids
        cursor = f"&cursor={page['nextCursor']}"


def typed_record(signer: str, chain_id: int) -> dict[str, Any]:
    return {
        "types": {
            "EIP712Domain": [
                {"name": "name", "type": "string"},
                {"name": "version", "type": "string"},
                {"name": "chainId", "type": "uint256"},
            ],
            "Endorsement": [
                {"name": "author", "type": "address"},
                {"name": "text", "type": "string"},
                {"name": "nonce", "type": "uint256"},
            ],
        },
        "primaryType": "Endorsement",
        "domain": {"name": "Example dApp", "version": "1", "chainId": chain_id},
        "message": {
            "author": signer,
            "text": "I vouch for this gateway's proofs.",
            "nonce": secrets.randbits(64),
        },
    }


def main() -> None:
    base = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("GATEWAY_URL", DEFAULT_URL)
    account = Account.from_key(sys.argv[2] if len(sys.argv) > 2 else DEV_KEY)
    w3 = Web3(Web3.HTTPProvider(f"{base}/rpc"))
    typed = typed_record(account.address, w3.eth.chain_id)
    signature = account.sign_message(encode_typed_data(full_message=typed)).signature.to_0x_hex()

    submitted = checked("POST", f"{base}/records", {"typedData": typed, "signature": signature})
    record_id = submitted["id"]
    stored = checked("GET", f"{base}/records/{record_id}")
    expect(stored["signer"] == account.address, "GET /records/{id} names another signer")
    expect(record_id in listed_ids(base, account.address), "the signer's list lacks the record")

    deadline = time.monotonic() + 60
    while True:  # 404 records.not_anchored until the next batch is on chain
        status, proof = call("GET", f"{base}/records/{record_id}/proof")
        if status == 200:
            break
        if proof.get("error", {}).get("code") != "records.not_anchored" or (
            time.monotonic() > deadline
        ):
            sys.exit(f"no proof for {record_id}: {status} {json.dumps(proof)}")
        time.sleep(0.5)

    root = bytes.fromhex(proof["root"][2:])
    siblings = [bytes.fromhex(node[2:]) for node in proof["proof"]]
    leaf = leaf_of(bytes.fromhex(record_id[2:]))
    expect(proof["leaf"] == "0x" + leaf.hex(), "the proof is for another leaf")
    anchor = w3.eth.contract(
        address=Web3.to_checksum_address(proof["contract"]),
        abi=load_artifact("MerkleAnchor")["abi"],
    )
    result = {
        "id": record_id,
        "signer": submitted["signer"],
        "root": proof["root"],
        "txHash": proof["txHash"],
        "blockNumber": proof["blockNumber"],
        "proofLength": len(siblings),
        "verifiedInPython": verify(root, leaf, siblings),
        "verifiedOnChain": anchor.functions.verify(root, leaf, siblings).call(),
    }
    print(json.dumps(result, indent=2))
    if not (result["verifiedInPython"] and result["verifiedOnChain"]):
        sys.exit("the proof did not verify")


if __name__ == "__main__":
    main()
