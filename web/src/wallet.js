// Injected wallets: EIP-6963 discovery first, then the legacy window.ethereum.

import { GatewayError } from "./gateway.js";

/** Every wallet that announces itself within `waitMs`, as {info, provider}. */
export function discoverWallets(waitMs = 300) {
  return new Promise((resolve) => {
    const found = new Map();
    const onAnnounce = (event) => {
      const { info, provider } = event.detail ?? {};
      if (info?.uuid && provider) found.set(info.uuid, { info, provider });
    };
    window.addEventListener("eip6963:announceProvider", onAnnounce);
    window.dispatchEvent(new Event("eip6963:requestProvider"));
    setTimeout(() => {
      window.removeEventListener("eip6963:announceProvider", onAnnounce);
      const wallets = [...found.values()];
      if (wallets.length === 0 && window.ethereum) {
        wallets.push({ info: { uuid: "legacy", name: "Browser wallet", rdns: "" }, provider: window.ethereum });
      }
      resolve(wallets);
    }, waitMs);
  });
}

/** A wallet's refusal or failure as a GatewayError the page can show. */
export function walletError(error) {
  if (error instanceof GatewayError) return error;
  if (error?.code === 4001) return new GatewayError("wallet.rejected", "the wallet refused the request");
  if (error?.code === 4100) return new GatewayError("wallet.unauthorized", "the wallet did not authorize this page");
  return new GatewayError("wallet.error", error?.message ?? String(error));
}

/** Ask the wallet to be on `chainId`; a wallet that stays elsewhere is `wallet.wrong_chain`. */
export async function ensureChain(provider, chainId) {
  const current = () => provider.request({ method: "eth_chainId" }).then((id) => Number.parseInt(id, 16));
  if ((await current()) === chainId) return;
  try {
    await provider.request({
      method: "wallet_switchEthereumChain",
      params: [{ chainId: `0x${chainId.toString(16)}` }],
    });
  } catch {
    // refused or unknown chain: said below
  }
  if ((await current()) !== chainId) {
    throw new GatewayError("wallet.wrong_chain", `the wallet is not on the gateway's chain (${chainId})`);
  }
}
