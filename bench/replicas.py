"""Sizing: sign-ins/s and /rpc requests/s for 1 and 2 workers on this machine, and the cost
of Redis-backed rate limits vs in-process ones, in one run.

    .venv/bin/python bench/replicas.py [--seconds 6]

Sign-ins are full flows (nonce + verify with a fresh key) from a Python client; /rpc is
wrk on eth_chainId (cached). With 2 workers the load generator shares the 2 cores with
them: figures are what one 2-core box serves, load included.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import aiohttp
from common import free_port, gateway_env, run_wrk, serving_gateway
from eth_account import Account
from eth_account.messages import encode_defunct

from gateway.chain import DevChain
from gateway.identity.siwe import SiweMessage

WRK_RPC = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"jsonrpc":"2.0","id":1,"method":"eth_chainId","params":[]}'
"""


async def sign_ins(base: str, seconds: float, concurrency: int = 16) -> float:
    domain = base.split("//", 1)[1]
    done = 0
    deadline = time.monotonic() + seconds
    accounts = [Account.create() for _ in range(concurrency)]
    async with aiohttp.ClientSession() as session:

        async def worker(account) -> None:
            nonlocal done
            while time.monotonic() < deadline:
                async with session.get(f"{base}/auth/nonce") as r:
                    nonce = (await r.json())["nonce"]
                text = SiweMessage(
                    domain=domain,
                    address=account.address,
                    uri=base,
                    chain_id=31337,
                    nonce=nonce,
                    issued_at="2026-01-01T00:00:00Z",
                ).to_text()
                signature = account.sign_message(encode_defunct(text=text)).signature.to_0x_hex()
                async with session.post(
                    f"{base}/auth/verify", json={"message": text, "signature": signature}
                ) as r:
                    done += r.status == 200

        started = time.monotonic()
        await asyncio.gather(*(worker(a) for a in accounts))
        return done / (time.monotonic() - started)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=6)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-replicas-"))
    redis_port = free_port()
    redis = subprocess.Popen(
        [
            shutil.which("redis-server"),
            "--port",
            str(redis_port),
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(work),
        ],
        stdout=subprocess.DEVNULL,
    )
    rows = []
    try:
        with DevChain.start(log_dir=work / "anvil") as chain:
            for workers, limits in ((1, "memory"), (2, "memory"), (1, "redis")):
                port = free_port()
                env = gateway_env(
                    work,
                    chain.url,
                    f"gw-{workers}-{limits}.db",
                    GATEWAY_SIWE_DOMAINS=f"127.0.0.1:{port}",
                    GATEWAY_IDENTITY__COOKIE_SECURE="false",
                    GATEWAY_IDENTITY__NONCE_RATE_PER_MINUTE="10000000",
                    GATEWAY_IDENTITY__VERIFY_RATE_PER_MINUTE="10000000",
                    GATEWAY_IDENTITY__RATE_BURST="10000000",
                    GATEWAY_IDENTITY__MAX_OUTSTANDING_NONCES="10000",
                    GATEWAY_RPC__ANONYMOUS__RATE_PER_S="10000000",
                    GATEWAY_RPC__ANONYMOUS__BURST="10000000",
                    GATEWAY_ANCHOR__ENABLED="false",
                )
                if limits == "redis":
                    env["GATEWAY_REDIS_URL"] = f"redis://127.0.0.1:{redis_port}/0"
                options = ("--workers", str(workers)) if workers > 1 else ()
                with serving_gateway(
                    port,
                    env,
                    cpu=None,
                    log=work / f"server-{port}.log",
                    options=options,
                ):
                    time.sleep(1)
                    script = work / "rpc.lua"
                    script.write_text(WRK_RPC)
                    rpc = run_wrk(
                        "rpc",
                        f"http://127.0.0.1:{port}/rpc",
                        seconds=args.seconds,
                        connections=32,
                        cpu=None,
                        script=script,
                    )
                    sign_in_rate = asyncio.run(sign_ins(f"http://127.0.0.1:{port}", args.seconds))
                    rows.append((workers, limits, sign_in_rate, rpc.requests_per_s, rpc.p99_ms))
    finally:
        redis.terminate()
        redis.wait(10)
    print(f"2 cores; load generator on the same box; {args.seconds}s per figure")
    print(
        f"{'workers':>7} {'rate limits':>12} {'sign-ins/s':>11} {'/rpc req/s':>11} {'rpc p99 ms':>11}"
    )
    for workers, limits, sign_in_rate, rps, p99 in rows:
        print(f"{workers:>7} {limits:>12} {sign_in_rate:>11.0f} {rps:>11.0f} {p99:>11.2f}")
    memory, redis_row = rows[0], rows[2]
    print(
        f"Redis-backed limits vs in-process (1 worker): /rpc {redis_row[3] / memory[3]:.2f}x, "
        f"sign-ins {redis_row[2] / memory[2]:.2f}x"
    )


if __name__ == "__main__":
    main()
