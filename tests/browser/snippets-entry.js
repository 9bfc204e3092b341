// What the README's snippets import, for the snippet harness page: viem itself (bundled from
// web/node_modules), and the two wallet-kit wrappers the snippets hand their adapter to.
// RainbowKit's createAuthenticationAdapter returns the adapter it is given; AppKit's
// createSIWEConfig wraps the same methods. The test calls the methods in the order each
// kit does (see test_snippets.py).
import {
  createPublicClient,
  createWalletClient,
  custom,
  encodeFunctionData,
  http,
  parseAbi,
  webSocket,
} from "viem";
import { createSiweMessage } from "viem/siwe";

window.kits = {
  createPublicClient,
  createWalletClient,
  http,
  webSocket,
  custom,
  encodeFunctionData,
  parseAbi,
  createSiweMessage,
  createAuthenticationAdapter: (adapter) => adapter,
  createSIWEConfig: (config) => config,
};
document.body.dataset.ready = "true";
