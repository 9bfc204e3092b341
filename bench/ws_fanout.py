"""newHeads fan-out: N WebSocket subscribers on one gateway process; time from asking anvil
to mine a block to the first and the last subscriber's receipt, beside one subscriber
directly on anvil (the baseline), in one run.

    .venv/bin/python bench/ws_fanout.py [--subscribers 1000] [--blocks 30]

The gateway runs pinned to core 0, this script (all subscribers) on core 1.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from pathlib import Path

import aiohttp
import orjson
from common import free_port, gateway_env, serving_gateway

from gateway.chain import DevChain

SUBSCRIBE = orjson.dumps(
    {"jsonrpc": "2.0", "id": 1, "method": "eth_subscribe", "params": ["newHeads"]}
)


async def subscriber(session, url, arrivals, ready):
    ws = await session.ws_connect(url, max_msg_size=0)
    await ws.send_bytes(SUBSCRIBE)
    reply = orjson.loads((await ws.receive()).data)
    assert "result" in reply, reply
    if not ready.done():
        ready.set_result(None)
    async for message in ws:
        data = orjson.loads(message.data)
        number = int(data["params"]["result"]["number"], 16)
        arrivals.setdefault(number, []).append(time.perf_counter())


def pct(values, q):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def run(chain: DevChain, gateway_ws: str, subscribers: int, blocks: int):
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        direct: dict[int, list[float]] = {}
        through: dict[int, list[float]] = {}
        tasks, readies = [], []
        ready = asyncio.get_running_loop().create_future()
        tasks.append(asyncio.create_task(subscriber(session, chain.ws_url, direct, ready)))
        await ready
        for index in range(subscribers):
            ready = asyncio.get_running_loop().create_future()
            readies.append(ready)
            tasks.append(asyncio.create_task(subscriber(session, gateway_ws, through, ready)))
            if index % 100 == 99:
                await asyncio.gather(*readies)
        await asyncio.gather(*readies)
        mined: dict[int, float] = {}
        for _ in range(blocks):
            started = time.perf_counter()
            async with session.post(
                chain.url, json={"jsonrpc": "2.0", "id": 1, "method": "evm_mine", "params": []}
            ) as r:
                await r.read()
            number = int(chain.rpc("eth_blockNumber"), 16)
            mined[number] = started
            deadline = time.perf_counter() + 10
            while len(through.get(number, [])) < subscribers and time.perf_counter() < deadline:
                await asyncio.sleep(0.001)
            await asyncio.sleep(0.05)
        for task in tasks:
            task.cancel()
        rows = {
            "anvil direct, 1 subscriber": [],
            "gateway, first subscriber": [],
            f"gateway, last of {subscribers} subscribers": [],
        }
        complete = 0
        for number, started in mined.items():
            if number in direct:
                rows["anvil direct, 1 subscriber"].append((direct[number][0] - started) * 1000)
            got = through.get(number, [])
            if len(got) == subscribers:
                complete += 1
                rows["gateway, first subscriber"].append((min(got) - started) * 1000)
                rows[f"gateway, last of {subscribers} subscribers"].append(
                    (max(got) - started) * 1000
                )
        print(
            f"newHeads fan-out: {blocks} blocks, {complete} delivered to all {subscribers} subscribers"
        )
        print(f"{'from evm_mine request to receipt':<40} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}")
        for name, values in rows.items():
            if values:
                print(
                    f"{name:<40} {statistics.median(values):>8.2f} {pct(values, 0.99):>8.2f} {max(values):>8.2f}"
                )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--blocks", type=int, default=30)
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {1})
    work = Path(tempfile.mkdtemp(prefix="bench-ws-"))
    with DevChain.start(log_dir=work / "anvil") as chain:
        port = free_port()
        env = gateway_env(
            work,
            f"{chain.url}|{chain.ws_url}",
            GATEWAY_RPC__WS_MAX_CONNECTIONS_PER_CALLER=str(args.subscribers + 10),
            GATEWAY_RPC__ANONYMOUS__RATE_PER_S="1000000",
            GATEWAY_RPC__ANONYMOUS__BURST="1000000",
        )
        with serving_gateway(port, env, cpu=0, log=work / "gateway.log"):
            asyncio.run(run(chain, f"ws://127.0.0.1:{port}/rpc", args.subscribers, args.blocks))


if __name__ == "__main__":
    main()
