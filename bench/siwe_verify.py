"""parse + verify of Sign-In with Ethereum messages: gateway.identity.siwe vs the `siwe`
package (the reference Python library), on the same signed messages, in one run.

    make bench-siwe        (sets up .venv-bench-siwe with siwe and abnf<2.4)

Both sides parse the text and check an EOA signature and the time window; both recover
with libsecp256k1 (coincurve is installed in both environments). Best of N rounds.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from eth_account import Account
from eth_account.messages import encode_defunct

from gateway.identity.siwe import SiweMessage, parse_message, verify_message

REFERENCE_PYTHON = Path(__file__).resolve().parents[1] / ".venv-bench-siwe" / "bin" / "python"


def make_cases(count: int) -> list[dict[str, str]]:
    cases = []
    for index in range(count):
        account = Account.create()
        text = SiweMessage(
            scheme="https",
            domain="app.example.org",
            address=account.address,
            statement="Sign in to the example dApp to manage your account.",
            uri="https://app.example.org/login",
            chain_id=1,
            nonce=f"n{index:07d}abcdefgh",
            issued_at="2026-11-25T08:00:00.000Z",
            expiration_time="2026-11-26T08:00:00.000Z",
            request_id=f"req-{index}",
            resources=(
                "ipfs://bafybeiemxf5abjwjbikoz4mc3a3dla6ual3jsgpdr4cjr3oz3evfyavhwq",
                "https://app.example.org/terms",
            ),
        ).to_text()
        signature = account.sign_message(encode_defunct(text=text)).signature.to_0x_hex()
        cases.append({"message": text, "signature": signature, "address": account.address})
    return cases


def time_ours(cases: list[dict[str, str]], moment: datetime, rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        for case in cases:
            verify_message(parse_message(case["message"]), case["signature"], time=moment)
        best = min(best, time.perf_counter() - started)
    return best / len(cases) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    moment = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
    cases = make_cases(args.messages)
    for case in cases:  # both sides must accept every case
        assert verify_message(case["message"], case["signature"], time=moment) == case["address"]
    ours = time_ours(cases, moment, args.rounds)
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
        json.dump({"messages": cases, "time": moment.isoformat()}, handle)
    if not REFERENCE_PYTHON.exists():
        sys.exit(f"{REFERENCE_PYTHON} missing: run `make bench-siwe`")
    out = subprocess.run(
        [
            str(REFERENCE_PYTHON),
            str(Path(__file__).parent / "siwe_reference.py"),
            handle.name,
            str(args.rounds),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0:
        sys.exit(f"the reference run failed:\n{out.stderr}")
    reference = json.loads(out.stdout)["us_per_message"]
    print(f"parse + verify, {args.messages} signed messages, best of {args.rounds} rounds")
    print(f"{'implementation':<32} {'us/message':>11} {'messages/s':>11} {'speed-up':>9}")
    for name, us in (("siwe (reference package)", reference), ("gateway.identity.siwe", ours)):
        print(f"{name:<32} {us:>11.1f} {1e6 / us:>11.0f} {reference / us:>8.1f}x")


if __name__ == "__main__":
    main()
