"""Gasless requests on anvil (automine): requests accepted per second and the time from
POST /relay to confirmed (p50/p99), with, side by side in the same run, the baseline of the
relayer key sending the same forwarder.execute calls itself (sign, send, receipt) with no
gateway in between.

    .venv/bin/python bench/relay.py [--signers 20] [--per-signer 10]

Confirmation times come from the gateway's own webhook (the "confirmed" event's arrival at
a receiver in this process), so the bench does not poll. Each signer's requests follow its
nonces; signers run in parallel.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path

import aiohttp
from aiohttp import web
from common import free_port, gateway_env, serving_gateway
from eth_account import Account
from web3 import AsyncHTTPProvider, AsyncWeb3

from gateway.chain import DevChain
from gateway.chain.artifacts import load_artifact
from gateway.chain.deploy import deploy_relay_contracts
from gateway.relay.forward import Domain, ForwardRequest, selector_of

SECRET = "bench-webhook-secret"  # noqa: S105  # signs webhooks to this process only
RELAYER, DIRECT = 7, 6  # anvil dev accounts: the gateway's relayer, the baseline's sender


def note_call(note: str) -> bytes:
    from eth_abi import abi  # noqa: PLC0415

    return bytes.fromhex(selector_of("sign(string)")[2:]) + abi.encode(["string"], [note])


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def through_gateway(base: str, signers: list, per_signer: int, arrivals: dict) -> tuple:
    posted: dict[str, float] = {}
    post_latency: list[float] = []
    async with aiohttp.ClientSession() as session:

        async def one_signer(signer) -> None:
            async with session.get(f"{base}/relay/forwarder?from={signer.address}") as r:
                info = await r.json()
            domain = Domain(
                info["domain"]["name"],
                info["domain"]["version"],
                info["domain"]["chainId"],
                info["domain"]["verifyingContract"],
            )
            for number in range(per_signer):
                request = ForwardRequest(
                    signer.address,
                    info["targets"][0]["address"],
                    0,
                    150_000,
                    int(info["nextNonce"]) + number,
                    int(time.time()) + 3600,
                    note_call(f"note {number}"),
                )
                typed = request.typed_data(domain)
                message = typed["message"]
                signature = signer.sign_typed_data(full_message=typed).signature.to_0x_hex()
                started = time.perf_counter()
                async with session.post(
                    f"{base}/relay", json={"request": message, "signature": signature}
                ) as r:
                    body = await r.json()
                    assert r.status == 202, body
                posted[body["id"]] = started
                post_latency.append(time.perf_counter() - started)

        started = time.perf_counter()
        await asyncio.gather(*(one_signer(signer) for signer in signers))
        accepted_s = time.perf_counter() - started
        total = len(signers) * per_signer
        while len([i for i in posted if i in arrivals]) < total:
            await asyncio.sleep(0.05)
        all_done_s = time.perf_counter() - started
    latencies = [arrivals[i] - posted[i] for i in posted]
    return total / accepted_s, total / all_done_s, latencies, post_latency


async def direct(  # noqa: PLR0917  # the baseline's inputs
    chain: DevChain,
    forwarder_address: str,
    domain: Domain,
    guestbook: str,
    signers: list,
    per_signer: int,
) -> tuple:
    """The baseline: the same requests, sent by a key of our own straight to the forwarder."""
    w3 = AsyncWeb3(AsyncHTTPProvider(chain.url))
    forwarder = w3.eth.contract(
        address=forwarder_address, abi=load_artifact("GatewayForwarder")["abi"]
    )
    sender = Account.from_key(chain.accounts[DIRECT].private_key)
    nonce = await w3.eth.get_transaction_count(sender.address)
    lock = asyncio.Lock()
    latencies: list[float] = []

    async def one_signer(signer) -> None:
        nonlocal nonce
        for number in range(per_signer):
            request = ForwardRequest(
                signer.address,
                guestbook,
                0,
                150_000,
                number,
                int(time.time()) + 3600,
                note_call(f"direct {number}"),
            )
            signature = signer.sign_typed_data(full_message=request.typed_data(domain)).signature
            started = time.perf_counter()
            async with lock:  # one key: its nonces in order
                call = forwarder.functions.execute(request.execute_args(bytes(signature)))
                tx = await call.build_transaction(
                    {"from": sender.address, "nonce": nonce, "gas": 300_000}
                )
                nonce += 1
                signed = sender.sign_transaction(tx)
                tx_hash = await w3.eth.send_raw_transaction(signed.raw_transaction)
            receipt = await w3.eth.wait_for_transaction_receipt(tx_hash, poll_latency=0.01)
            assert receipt["status"] == 1
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(one_signer(signer) for signer in signers))
    elapsed = time.perf_counter() - started
    await w3.provider.disconnect()
    total = len(signers) * per_signer
    return total / elapsed, latencies


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--signers", type=int, default=20)
    parser.add_argument("--per-signer", type=int, default=10)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-relay-"))
    arrivals: dict[str, float] = {}

    async def hook(request: web.Request) -> web.Response:
        event = json.loads(await request.read())
        if event["status"] == "confirmed":
            arrivals.setdefault(event["id"], time.perf_counter())
        return web.Response(status=204)

    receiver = web.Application()
    receiver.router.add_post("/hook", hook)
    runner = web.AppRunner(receiver, access_log=None)
    await runner.setup()
    hook_port = free_port()
    await web.TCPSite(runner, "127.0.0.1", hook_port).start()
    with DevChain.start(log_dir=work / "anvil") as chain:
        w3 = AsyncWeb3(AsyncHTTPProvider(chain.url))
        deployed = await deploy_relay_contracts(
            w3, Account.from_key(chain.accounts[0].private_key), work / "deployments.json"
        )
        forwarder = w3.eth.contract(
            address=deployed["GatewayForwarder"], abi=load_artifact("GatewayForwarder")["abi"]
        )
        (
            _f,
            name,
            version,
            chain_id,
            verifying,
            _s,
            _e,
        ) = await forwarder.functions.eip712Domain().call()
        await w3.provider.disconnect()
        domain = Domain(name, version, chain_id, verifying)
        port = free_port()
        env = gateway_env(
            work,
            chain.url,
            GATEWAY_ANCHOR__ENABLED="false",
            GATEWAY_ANCHOR__DEPLOYMENTS_FILE=str(work / "deployments.json"),
            GATEWAY_RELAY__PRIVATE_KEY=chain.accounts[RELAYER].private_key,
            GATEWAY_RELAY__TARGETS='{"Guestbook": ["sign(string)"]}',
            GATEWAY_RELAY__REQUESTS_PER_HOUR="100000",
            GATEWAY_RELAY__POLL_INTERVAL_S="0.02",
            GATEWAY_RELAY__WEBHOOKS=json.dumps([f"http://127.0.0.1:{hook_port}/hook"]),
            GATEWAY_RELAY__WEBHOOK_SECRET=SECRET,
        )
        with serving_gateway(port, env, cpu=None, log=work / "gateway.log"):
            base = f"http://127.0.0.1:{port}"
            gw_signers = [Account.create() for _ in range(args.signers)]
            accepted, finished, latencies, post_latency = await through_gateway(
                base, gw_signers, args.per_signer, arrivals
            )
            base_signers = [Account.create() for _ in range(args.signers)]
            base_rate, base_latencies = await direct(
                chain,
                deployed["GatewayForwarder"],
                domain,
                deployed["Guestbook"],
                base_signers,
                args.per_signer,
            )
    await runner.cleanup()
    total = args.signers * args.per_signer
    print(
        f"relay on anvil (automine), {args.signers} signers x {args.per_signer} requests = {total}"
    )
    print(f"{'path':<46} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8}")
    print(
        f"{'direct: own key sends forwarder.execute':<46} {base_rate:>8.1f} "
        f"{quantile(base_latencies, 0.5) * 1e3:>8.1f} {quantile(base_latencies, 0.99) * 1e3:>8.1f}"
    )
    print(
        f"{'gateway: POST /relay accepted (202)':<46} {accepted:>8.1f} "
        f"{quantile(post_latency, 0.5) * 1e3:>8.1f} {quantile(post_latency, 0.99) * 1e3:>8.1f}"
    )
    print(
        f"{'gateway: POST to confirmed (webhook)':<46} {finished:>8.1f} "
        f"{quantile(latencies, 0.5) * 1e3:>8.1f} {quantile(latencies, 0.99) * 1e3:>8.1f}"
    )
    print(
        f"accepted/s vs direct sends/s: {accepted / base_rate:.2f}x; "
        f"p50 POST-to-confirmed vs direct send-to-receipt: "
        f"{statistics.median(latencies) / statistics.median(base_latencies):.2f}x"
    )


if __name__ == "__main__":
    asyncio.run(main())
