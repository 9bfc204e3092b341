// viem's public client pointed at the gateway: blocks, balances and a contract read through
// /rpc, the way a dApp frontend does it (viem comes from web/'s pinned packages: `make setup`
// links them for the examples).
//
//   node examples/rpc_viem.mjs [http://127.0.0.1:8080]
import { createPublicClient, formatEther, http } from "viem";
import { foundry } from "viem/chains";

const gateway = process.argv[2] ?? process.env.GATEWAY_URL ?? "http://127.0.0.1:8080";
const client = createPublicClient({ chain: foundry, transport: http(`${gateway}/rpc`) });
const devAccount = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"; // anvil's #0

const block = await client.getBlock();
const balance = await client.getBalance({ address: devAccount });
console.log(
  JSON.stringify(
    {
      chainId: await client.getChainId(),
      blockNumber: Number(block.number),
      blockHash: block.hash,
      balanceEth: formatEther(balance),
    },
    null,
    2,
  ),
);
