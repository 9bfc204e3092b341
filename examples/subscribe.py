"""Subscribe to newHeads over the gateway's WebSocket and print the blocks pushed (one by
default), then unsubscribe. `logs` subscriptions take a filter the same way:
``["logs", {"address": "0x…", "topics": [...]}]``.

    .venv/bin/python examples/subscribe.py [http://127.0.0.1:8080] [--blocks N]

`make dev` mines a block every 2 s, so the first notification comes within seconds.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys

import aiohttp

DEFAULT_URL = "http://127.0.0.1:8080"  # make dev's gateway (GATEWAY_URL or the first argument)


async def main() -> None:
    args = [arg for arg in sys.argv[1:] if not arg.startswith("--")]
    base = args[0] if args else os.environ.get("GATEWAY_URL", DEFAULT_URL)
    blocks = int(sys.argv[sys.argv.index("--blocks") + 1]) if "--blocks" in sys.argv else 1
    async with aiohttp.ClientSession() as session, session.ws_connect(f"{base}/rpc") as ws:
        await ws.send_json(
            {"jsonrpc": "2.0", "id": 1, "method": "eth_subscribe", "params": ["newHeads"]}
        )
        subscription = (await ws.receive_json(timeout=10))["result"]
        heard = []
        while len(heard) < blocks:
            message = await ws.receive_json(timeout=30)
            if message.get("params", {}).get("subscription") == subscription:
                head = message["params"]["result"]
                heard.append({"number": int(head["number"], 16), "hash": head["hash"]})
        await ws.send_json(
            {"jsonrpc": "2.0", "id": 2, "method": "eth_unsubscribe", "params": [subscription]}
        )
    print(json.dumps({"subscription": subscription, "newHeads": heard}, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
