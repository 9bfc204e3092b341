"""Signed records: verified+stored records/s on SQLite beside verification alone (the
ceiling) on the same records, in one run; then anchoring of one 10,000-record batch.

    .venv/bin/python bench/records.py [--records 4000] [--batch 10000]

HTTP figures: the gateway pinned to core 0, wrk (32 and 128 connections, each request a
distinct signed record read from a file) on core 1; records/s = rows stored / wall time.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sqlite3
import sys
import tempfile
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import orjson
import sqlalchemy as sa
from aiohttp import web
from common import Result, free_port, gateway_env, run_wrk, serving, serving_gateway
from eth_account import Account
from eth_account.messages import encode_typed_data
from inproc import concurrent_rate, http_post
from web3 import AsyncHTTPProvider, AsyncWeb3

from gateway.app import create_app
from gateway.chain import DevChain, signatures
from gateway.chain.deploy import anchor_account, deploy_anchor
from gateway.config import load_settings
from gateway.records import acceptance
from gateway.records.routes import ANCHORER, RECORDS
from gateway.storage import STORAGE
from gateway.storage.schema import anchor_batches, records
from gateway.telemetry import configure_logging

T = TypeVar("T")
DEVNULL = open(os.devnull, "wb")  # the bench's log sink, for its whole run

WRK_SCRIPT = """
local bodies = {}
for line in io.lines("%s") do bodies[#bodies + 1] = line end
local i = 0
request = function()
  i = i + 1
  if i > #bodies then i = 1 end
  return wrk.format("POST", "/records", {["Content-Type"] = "application/json"}, bodies[i])
end
"""

# The least any aiohttp service must do per record: read the body, verify, answer. No
# storage, no middleware (logs, metrics, spans), no policy beyond the gateway's own checks.
BARE_VERIFY = """
import sys
import orjson
from aiohttp import web
from gateway.config import load_settings
from gateway.chain import signatures
from gateway.records import acceptance
settings = load_settings(None, {"GATEWAY_CHAIN_ID": "31337"}).records
async def submit(request):
    body = orjson.loads(await request.read())
    candidate = acceptance.prepare(body["typedData"], max_bytes=settings.max_bytes)
    acceptance.check_policy(candidate, settings, chain_ids={31337})
    signature = signatures.signature_bytes(body["signature"])
    signer = signatures.recover_address(candidate.id, signature, checksum=False)
    payload = {"id": candidate.id_hex, "signer": signer}
    return web.Response(body=orjson.dumps(payload), content_type="application/json")
app = web.Application()
app.router.add_post("/records", submit)
app.router.add_get("/ready", lambda request: web.Response(text="ok"))
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None)
"""

TYPES = {
    "EIP712Domain": [
        {"name": "name", "type": "string"},
        {"name": "version", "type": "string"},
        {"name": "chainId", "type": "uint256"},
    ],
    "Attestation": [
        {"name": "subject", "type": "address"},
        {"name": "claim", "type": "string"},
        {"name": "score", "type": "uint256"},
        {"name": "nonce", "type": "uint256"},
    ],
}
DOMAIN = {"name": "Bench", "version": "1", "chainId": 31337}


def make_records(count: int) -> list[bytes]:
    signers = [Account.create() for _ in range(16)]
    bodies = []
    for index in range(count):
        signer = signers[index % len(signers)]
        typed = {
            "types": TYPES,
            "primaryType": "Attestation",
            "domain": DOMAIN,
            "message": {
                "subject": signer.address,
                "claim": f"claim number {index}",
                "score": index,
                "nonce": index,
            },
        }
        signature = signer.sign_message(encode_typed_data(full_message=typed)).signature.to_0x_hex()
        bodies.append(orjson.dumps({"typedData": typed, "signature": signature}))
    return bodies


def verify_only(bodies: list[bytes]) -> float:
    settings = load_settings(None, {"GATEWAY_CHAIN_ID": "31337"}).records
    started = time.perf_counter()
    for body in bodies:
        request = orjson.loads(body)
        candidate = acceptance.prepare(request["typedData"], max_bytes=settings.max_bytes)
        acceptance.check_policy(candidate, settings, chain_ids={31337})
        signatures.recover_address(
            candidate.id, signatures.signature_bytes(request["signature"]), checksum=False
        )
    return len(bodies) / (time.perf_counter() - started)


async def anchor_batch(chain: DevChain, work: Path, size: int) -> None:
    key = chain.accounts[9].private_key
    env = gateway_env(
        work,
        chain.url,
        "anchor.db",
        GATEWAY_ANCHOR__PRIVATE_KEY=key,
        GATEWAY_ANCHOR__INTERVAL_S="3600",
        GATEWAY_ANCHOR__MAX_BATCH=str(size),
        GATEWAY_ANCHOR__MIN_BATCH=str(size),
        GATEWAY_ANCHOR__DEPLOYMENTS_FILE=str(work / "deployments.json"),
    )
    settings = load_settings(None, env)
    w3 = AsyncWeb3(AsyncHTTPProvider(chain.url))
    await deploy_anchor(w3, anchor_account(settings.anchor), settings.anchor.deployments_file)
    await w3.provider.disconnect()
    configure_logging(settings.log, stream=DEVNULL)
    app = create_app(settings)
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        service = app[RECORDS]
        bodies = make_records(size)
        for body in bodies:
            request = orjson.loads(body)
            await service.submit(
                request["typedData"], request["signature"], claimed_signer=None, session=None
            )
        started = time.perf_counter()
        batch_id = await app[ANCHORER].anchor_once()
        elapsed = time.perf_counter() - started
        async with app[STORAGE].engine.connect() as connection:
            batch = (
                await connection.execute(
                    sa.select(anchor_batches).where(anchor_batches.c.id == batch_id)
                )
            ).one()
            lengths = [
                len(orjson.loads(proof))
                for proof in (await connection.execute(sa.select(records.c.proof))).scalars()
            ]
        print(
            f"anchoring one batch of {batch.count} records: {elapsed:.2f} s (tree + {batch.count} proofs stored "
            f"+ tx + receipt), gas used {batch.gas_used}, "
            f"proof length {min(lengths)}-{max(lengths)} hashes"
        )
    finally:
        await runner.cleanup()


def post_records(
    work: Path, port: int, bodies: list[bytes], connections: int, seconds: int
) -> Result:
    """One wrk run that POSTs each of ``bodies`` once, in turn, at ``connections``."""
    bodies_file = work / f"bodies-{port}-{connections}.txt"
    bodies_file.write_bytes(b"".join(body + b"\n" for body in bodies))
    script = work / f"records-{port}-{connections}.lua"
    script.write_text(WRK_SCRIPT % str(bodies_file))
    return run_wrk(
        "records",
        f"http://127.0.0.1:{port}/records",
        seconds=seconds,
        connections=connections,
        cpu=1,
        script=script,
    )


def verify_floor(work: Path, bodies: list[bytes], connections: int, seconds: int) -> Result:
    """Verified records/s of BARE_VERIFY on core 0 (every answer must be a 200)."""
    port = free_port()
    with serving(
        [sys.executable, "-c", BARE_VERIFY, str(port)],
        {},
        cpu=0,
        log=work / "bare-verify.log",
        ready_url=f"http://127.0.0.1:{port}/ready",
    ):
        result = post_records(work, port, bodies, connections, seconds)
    if result.errors:
        raise SystemExit(f"the bare verifier refused {result.errors} records")
    return result


def store_rate(
    work: Path,
    port: int,
    bodies: list[bytes],
    connections: int,
    seconds: int,
    *,
    database: str = "gw.db",
) -> tuple[float, str]:
    """One wrk run of distinct records at ``connections``: (records stored/s, detail)."""
    db = work / database
    with sqlite3.connect(db) as connection:
        before = connection.execute("SELECT count(*) FROM records").fetchone()[0]
    started = time.perf_counter()
    result = post_records(work, port, bodies, connections, seconds)
    elapsed = time.perf_counter() - started
    with sqlite3.connect(db) as connection:
        created = connection.execute("SELECT count(*) FROM records").fetchone()[0] - before
    if created >= len(bodies):
        print("warning: every prepared record was stored; use more --records")
    detail = (
        f"({created} stored in {elapsed:.1f} s; "
        f"p50 {result.p50_ms:.1f} ms, p99 {result.p99_ms:.1f} ms)"
    )
    return created / elapsed, detail


async def store_in_process(work: Path, upstream: str, bodies: list[bytes]) -> tuple[float, float]:
    """The gateway app driven in process (bench/inproc.py: aiohttp's own HTTP protocol, no
    sockets), 32 connections: (records/s, CPU us per record). Steadier than the wrk rows on
    a shared machine, and the same work but the kernel's."""
    settings = load_settings(
        None,
        {
            **gateway_env(work, upstream, "in-process.db", GATEWAY_ANCHOR__ENABLED="false"),
            "GATEWAY_RECORDS__SUBMIT_RATE_PER_S": "1000000",
            "GATEWAY_RECORDS__SUBMIT_BURST": "1000000",
        },
    )
    configure_logging(settings.log, stream=DEVNULL)
    requests = [http_post("/records", body) for body in bodies]
    return await concurrent_rate(create_app(settings), requests, connections=32)


async def on_core_0(work: Coroutine[Any, Any, T]) -> T:
    """Run ``work`` with this process pinned to core 0, where the servers run."""
    if not hasattr(os, "sched_setaffinity"):
        return await work
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {0})
    try:
        return await work
    finally:
        os.sched_setaffinity(0, before)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=16000, help="per concurrency level")
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--batch", type=int, default=10_000)
    parser.add_argument("--connections", type=int, nargs="+", default=[32, 128])
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-records-"))
    workloads = {c: make_records(args.records) for c in args.connections}
    ceiling = verify_only(workloads[args.connections[0]])
    floor = verify_floor(work, workloads[args.connections[0]], args.connections[-1], args.seconds)
    with DevChain.start(log_dir=work / "anvil") as chain:
        port = free_port()
        env = gateway_env(
            work,
            chain.url,
            GATEWAY_ANCHOR__ENABLED="false",
            # one wrk process stands for many callers: the per-caller limit is lifted
            GATEWAY_RECORDS__SUBMIT_RATE_PER_S="1000000",
            GATEWAY_RECORDS__SUBMIT_BURST="1000000",
        )
        in_process = asyncio.run(
            on_core_0(store_in_process(work, chain.url, workloads[args.connections[0]][:12000]))
        )
        with serving_gateway(port, env, cpu=0, log=work / "gateway.log"):
            rows = {
                c: store_rate(work, port, bodies, c, args.seconds)
                for c, bodies in workloads.items()
            }
        # The same gateway with every request on aiohttp's path (server.lane=false).
        no_lane = {
            **env,
            **gateway_env(work, chain.url, "gw-no-lane.db"),
            "GATEWAY_SERVER__LANE": "false",
        }
        with serving_gateway(port, no_lane, cpu=0, log=work / "gateway-no-lane.log"):
            first = args.connections[0]
            lane_off = store_rate(
                work, port, workloads[first], first, args.seconds, database="gw-no-lane.db"
            )
        print(f"{args.records} distinct signed EIP-712 records (16 signers) per row")
        print(f"{'':<46} {'records/s':>10} {'vs ceiling':>11}")
        print(f"{'verify only, in process (the ceiling)':<46} {ceiling:>10.0f} {1.0:>10.2f}x")
        label = f"bare aiohttp: read + verify, {args.connections[-1]} conns"
        rate = floor.requests_per_s
        print(
            f"{label:<46} {rate:>10.0f} {rate / ceiling:>10.2f}x   "
            "(no storage, no logs/metrics/spans: the floor of an aiohttp service)"
        )
        label = "POST /records in process, 32 in flight"
        rate, cpu_us = in_process
        print(
            f"{label:<46} {rate:>10.0f} {rate / ceiling:>10.2f}x   "
            f"({cpu_us:.0f} us of CPU per record, all threads: HTTP parsing to commit, no "
            "sockets, one core)"
        )
        for connections, (rate, detail) in rows.items():
            label = f"POST /records, verified + stored, {connections} conns"
            print(f"{label:<46} {rate:>10.0f} {rate / ceiling:>10.2f}x   {detail}")
        rate, detail = lane_off
        label = f"  the same, lane off, {args.connections[0]} conns"
        print(f"{label:<46} {rate:>10.0f} {rate / ceiling:>10.2f}x   {detail}")
        if hasattr(os, "sched_setaffinity"):
            os.sched_setaffinity(0, {0, 1})
        asyncio.run(anchor_batch(chain, work, args.batch))


if __name__ == "__main__":
    main()
