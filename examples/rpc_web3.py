"""web3.py's AsyncWeb3 pointed at the gateway: the gateway is a JSON-RPC endpoint like any
node, with its cache, failover and limits in front.

    .venv/bin/python examples/rpc_web3.py [http://127.0.0.1:8080]
"""

from __future__ import annotations

import asyncio
import json
import os
import sys

from web3 import AsyncHTTPProvider, AsyncWeb3

DEFAULT_URL = "http://127.0.0.1:8080"  # make dev's gateway (GATEWAY_URL or the first argument)
DEV_ACCOUNT = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"  # anvil's #0


async def main() -> None:
    base = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("GATEWAY_URL", DEFAULT_URL)
    w3 = AsyncWeb3(AsyncHTTPProvider(f"{base}/rpc"))
    try:
        block = await w3.eth.get_block("latest")
        shown = {
            "chainId": await w3.eth.chain_id,
            "blockNumber": block["number"],
            "blockHash": block["hash"].to_0x_hex(),
            "balanceWei": await w3.eth.get_balance(DEV_ACCOUNT),
        }
    finally:
        await w3.provider.disconnect()
    print(json.dumps(shown, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
