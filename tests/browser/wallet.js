// A test wallet injected into every page before its scripts run: an EIP-1193 provider backed
// by one of anvil's dev accounts (anvil signs with personal_sign / eth_signTypedData_v4), and
// announced by EIP-6963. No extension wallet runs headless; this is what one looks like to a
// page. window.__testWallet steers it: reject the next request, or refuse to change chains.
(() => {
  const config = __CONFIG__;
  const control = (window.__testWallet = {
    chainId: config.chainId,
    rejectNext: false,
    refuseSwitch: false,
    calls: [],
  });
  const listeners = new Map();
  const emit = (event, value) => (listeners.get(event) ?? []).forEach((listener) => listener(value));
  const rejected = () => Object.assign(new Error("User rejected the request."), { code: 4001 });

  async function node(method, params) {
    const response = await fetch(config.nodeUrl, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ jsonrpc: "2.0", id: 1, method, params }),
    });
    const reply = await response.json();
    if (reply.error) throw Object.assign(new Error(reply.error.message), { code: reply.error.code });
    return reply.result;
  }

  const provider = {
    isTestWallet: true,
    async request({ method, params = [] }) {
      control.calls.push(method);
      const userFacing = ["eth_requestAccounts", "personal_sign", "eth_signTypedData_v4"];
      if (userFacing.includes(method) && control.rejectNext) {
        control.rejectNext = false;
        throw rejected();
      }
      switch (method) {
        case "eth_requestAccounts":
        case "eth_accounts":
          return [config.address];
        case "eth_chainId":
          return `0x${control.chainId.toString(16)}`;
        case "wallet_switchEthereumChain": {
          if (control.refuseSwitch) throw rejected();
          control.chainId = Number.parseInt(params[0].chainId, 16);
          emit("chainChanged", params[0].chainId);
          return null;
        }
        case "personal_sign":
          return node("personal_sign", [params[0], config.address]);
        case "eth_signTypedData_v4":
          return node("eth_signTypedData_v4", [config.address, params[1]]);
        default:
          return node(method, params);
      }
    },
    on(event, listener) {
      listeners.set(event, [...(listeners.get(event) ?? []), listener]);
    },
    removeListener(event, listener) {
      listeners.set(event, (listeners.get(event) ?? []).filter((each) => each !== listener));
    },
  };
  const detail = Object.freeze({
    info: { uuid: "8a1a4c1e-0000-4000-8000-000000000001", name: "Test Wallet", icon: "data:image/svg+xml,<svg xmlns='http://www.w3.org/2000/svg'/>", rdns: "dev.gateway.testwallet" },
    provider,
  });
  const announce = () => window.dispatchEvent(new CustomEvent("eip6963:announceProvider", { detail }));
  window.addEventListener("eip6963:requestProvider", announce);
  announce();
  if (!window.ethereum) window.ethereum = provider; // injected wallets set it too
})();
