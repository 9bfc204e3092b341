"""A gasless Guestbook note: a fresh wallet with no ETH signs an ERC-2771 ForwardRequest,
the gateway's relayer pays for it, and the script polls until it is confirmed.

    .venv/bin/python examples/gasless.py [http://127.0.0.1:8080] [note]

Everything the wallet signs comes from GET /relay/forwarder: the forwarder's EIP-712
domain and types, the targets it may call, and the signer's next nonce. In the request,
`value`, `gas`, `nonce` and `deadline` are decimal strings (uint256 values; numbers are
taken too while they fit in 53 bits).
"""

from __future__ import annotations

import json
import os
import sys
import time
import urllib.error
import urllib.request

from eth_abi import encode
from eth_account import Account
from eth_utils import function_signature_to_4byte_selector

DEFAULT_URL = "http://127.0.0.1:8080"  # make dev's gateway (GATEWAY_URL or the first argument)
FINAL = {"confirmed", "failed", "expired", "canceled"}


def call(method: str, url: str, body: dict | None = None) -> dict:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        url, data=data, method=method, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:  # the gateway's JSON error says why
        sys.exit(f"{method} {url}: {exc.code} {exc.read().decode()}")


def main() -> None:
    base = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("GATEWAY_URL", DEFAULT_URL)
    note = sys.argv[2] if len(sys.argv) > 2 else "hello, gasless"
    wallet = Account.create()  # no ETH at all
    info = call("GET", f"{base}/relay/forwarder?from={wallet.address}")
    target = next(t for t in info["targets"] if "sign(string)" in t["functions"])
    data = function_signature_to_4byte_selector("sign(string)") + encode(["string"], [note])
    request = {
        "from": wallet.address,
        "to": target["address"],
        "value": "0",
        "gas": "150000",
        "nonce": info["nextNonce"],
        "deadline": str(int(time.time()) + 3600),
        "data": "0x" + data.hex(),
    }
    typed = {
        "types": info["types"],
        "primaryType": info["primaryType"],
        "domain": info["domain"],
        "message": request,
    }
    signature = wallet.sign_typed_data(full_message=typed).signature.to_0x_hex()
    status = call("POST", f"{base}/relay", {"request": request, "signature": signature})
    deadline = time.monotonic() + 60
    while status["status"] not in FINAL and time.monotonic() < deadline:
        time.sleep(0.5)
        status = call("GET", f"{base}/relay/{status['id']}")
    print(json.dumps({**status, "signer": wallet.address, "note": note}, indent=2))
    if status["status"] != "confirmed":
        sys.exit(1)


if __name__ == "__main__":
    main()
