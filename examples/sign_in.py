"""Sign in to a running gateway with a wallet key, then show the session.

    .venv/bin/python examples/sign_in.py [http://127.0.0.1:8080] [0xPRIVATE_KEY]

Defaults to `make dev`'s gateway and anvil's first public dev key (never use it on a
real chain).
"""

from __future__ import annotations

import json
import os
import sys
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

from eth_account import Account
from eth_account.messages import encode_defunct

from gateway.identity.siwe import SiweMessage

DEV_KEY = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"  # anvil's #0
DEFAULT_URL = (
    "http://127.0.0.1:8080"  # make dev's gateway (GATEWAY_URL or the first argument: another)
)


def call(method: str, url: str, body: dict | None = None, token: str | None = None) -> dict:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as exc:  # the gateway's JSON error says why
        sys.exit(f"{method} {url}: {exc.code} {exc.read().decode()}")


def main() -> None:
    base = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("GATEWAY_URL", DEFAULT_URL)
    account = Account.from_key(sys.argv[2] if len(sys.argv) > 2 else DEV_KEY)
    nonce = call("GET", f"{base}/auth/nonce")["nonce"]
    now = datetime.now(UTC)
    message = SiweMessage(
        domain=urlsplit(base).netloc,
        address=account.address,
        statement="Sign in to the dApp gateway.",
        uri=base,
        chain_id=31337,
        nonce=nonce,
        issued_at=now.isoformat(timespec="seconds").replace("+00:00", "Z"),
        expiration_time=(now + timedelta(hours=1)).isoformat(timespec="seconds"),
    ).to_text()
    signature = account.sign_message(encode_defunct(text=message)).signature.to_0x_hex()
    signed_in = call("POST", f"{base}/auth/verify", {"message": message, "signature": signature})
    print(json.dumps(call("GET", f"{base}/auth/session", token=signed_in["token"]), indent=2))


if __name__ == "__main__":
    main()
