// The reference dApp page: sign in with a wallet, read the chain through /rpc and a newHeads
// subscription, sign and submit an EIP-712 record, check its anchor on chain, sign out.
// Every user action is one trace (trace.js); every failure shows the gateway's error code next
// to the action that caused it. Without a wallet the page says what is needed, and the
// actions that need one stay disabled.

import { decodeFunctionResult, encodeFunctionData, formatEther, parseAbi, stringToHex } from "viem";

import { createGateway, GatewayError } from "./gateway.js";
import { newAction } from "./trace.js";
import { discoverWallets, ensureChain, walletError } from "./wallet.js";

const GUESTBOOK = parseAbi(["function sign(string note)"]);
const RELAY_FINAL = new Set(["confirmed", "failed", "expired", "canceled"]);

const MERKLE_ANCHOR = parseAbi([
  "function verify(bytes32 root, bytes32 leaf, bytes32[] proof) view returns (bool)",
]);

const params = new URLSearchParams(location.search);
const gateway = createGateway((params.get("gateway") ?? location.origin).replace(/\/$/, ""));
const $ = (id) => document.getElementById(id);
const state = {
  wallet: null,
  address: null,
  chainId: null, // the chosen network's
  networks: [],
  socket: null,
  records: new Map(),
  verified: new Set(),
};

function show(id, text) {
  $(id).textContent = text;
}

/** An error shown in the slot of the section whose action caused it (session, chain, …). */
function showError(slot, error) {
  const shown = error instanceof GatewayError ? error : walletError(error);
  show(`${slot}-error-code`, shown.code);
  show(`${slot}-error-message`, shown.message);
  $(`${slot}-error`).hidden = false;
}

const errorsIn = (slot) => (error) => showError(slot, error);

/** Run a user action as one trace; its trace id is shown for an SRE to look up. */
async function act(name, slot, work) {
  const action = newAction(name);
  gateway.setAction(action);
  show("trace-action", name);
  show("trace-id", action.traceId);
  show("trace-span", action.spanId);
  $(`${slot}-error`).hidden = true;
  try {
    await work();
  } catch (error) {
    showError(slot, error);
  } finally {
    gateway.setAction(null);
  }
}

async function gatewayChainId() {
  if (state.chainId === null) state.chainId = Number.parseInt(await gateway.rpc("eth_chainId"), 16);
  return state.chainId;
}

/** The gateway's networks (GET /networks): the picker, and each one's block number. */
async function refreshNetworks() {
  const { networks } = await gateway.call("/networks");
  state.networks = networks;
  const picker = $("network");
  if (picker.options.length !== networks.length) {
    const wanted = Number(params.get("chain") ?? NaN);
    const chosen = networks.find((n) => n.chainId === wanted) ?? networks.find((n) => n.default);
    picker.replaceChildren(
      ...networks.map((network) => {
        const option = document.createElement("option");
        option.value = String(network.chainId);
        option.textContent = network.alias ? `${network.alias} (${network.chainId})` : `chain ${network.chainId}`;
        option.selected = network === chosen;
        return option;
      }),
    );
    choose(chosen);
  }
  $("networks").replaceChildren(
    ...networks.map((network) => {
      const row = document.createElement("tr");
      row.dataset.chainId = String(network.chainId);
      for (const text of [String(network.chainId), network.alias ?? "", network.blockNumber ?? "…"]) {
        const cell = document.createElement("td");
        cell.textContent = String(text);
        row.append(cell);
      }
      return row;
    }),
  );
}

/** Work on `network` from now on: its /rpc path, its chain id for the wallet, its heads. */
function choose(network) {
  state.chainId = network.chainId;
  gateway.setNetwork(network.rpc);
  show("network-chain", String(network.chainId));
  if (state.socket) state.socket.close(); // followHeads opens the new network's
}

async function changeNetwork() {
  const network = state.networks.find((n) => String(n.chainId) === $("network").value);
  if (!network) return;
  choose(network);
  await refreshBlock();
  await refreshBalance();
}

async function pickWallet() {
  if (state.wallet) return state.wallet;
  const wallets = await discoverWallets();
  if (wallets.length === 0) throw new GatewayError("wallet.none", "no wallet found in this browser");
  state.wallet = wallets[0];
  show("wallet-name", state.wallet.info.name);
  return state.wallet;
}

async function walletCall(method, args) {
  const { provider } = await pickWallet();
  try {
    return await provider.request({ method, params: args });
  } catch (error) {
    throw walletError(error);
  }
}

async function signIn() {
  const { provider } = await pickWallet();
  const [address] = await walletCall("eth_requestAccounts", []);
  const chainId = await gatewayChainId();
  await ensureChain(provider, chainId);
  const { message } = await gateway.call("/auth/message", {
    method: "POST",
    body: { address, chainId, statement: "Sign in to the gateway's reference page." },
  });
  const signature = await walletCall("personal_sign", [stringToHex(message), address]);
  const session = await gateway.call("/auth/verify", { method: "POST", body: { message, signature } });
  gateway.setToken(session.token);
  await refreshSession();
}

async function refreshSession() {
  if (!gateway.signedIn) return renderSession(null);
  try {
    renderSession(await gateway.call("/auth/session"));
  } catch (error) {
    if (error.status !== 401) throw error;
    gateway.setToken(null);
    renderSession(null);
  }
}

function renderSession(session) {
  state.address = session?.address ?? null;
  show("session-address", session ? session.address : "signed out");
  show("session-expires", session ? session.expiresAt : "");
  $("signed-in").hidden = !session;
  $("sign-in").hidden = Boolean(session);
  for (const id of ["submit-record", "gasless"]) {
    $(id).disabled = !session || !state.wallet;
    $(id).title = !state.wallet ? "no wallet in this browser" : session ? "" : "sign in first";
  }
  if (session) {
    refreshBalance().catch(errorsIn("session"));
    refreshRecords().catch(errorsIn("records"));
  } else {
    show("balance", "");
    $("records").replaceChildren();
  }
}

async function signOut() {
  await gateway.call("/auth/logout");
  gateway.setToken(null);
  await refreshSession();
}

async function refreshBlock() {
  show("block-number", String(Number.parseInt(await gateway.rpc("eth_blockNumber"), 16)));
}

async function refreshBalance() {
  if (!state.address) return;
  show("balance", `${formatEther(BigInt(await gateway.rpc("eth_getBalance", [state.address, "latest"])))} ETH`);
}

function followHeads() {
  const socket = new WebSocket(gateway.websocketUrl());
  state.socket = socket;
  socket.addEventListener("open", () => {
    socket.send(JSON.stringify({ jsonrpc: "2.0", id: 1, method: "eth_subscribe", params: ["newHeads"] }));
  });
  socket.addEventListener("message", (event) => {
    const message = JSON.parse(event.data);
    const head = message.params?.result;
    if (message.method === "eth_subscription" && head?.number) {
      show("block-number", String(Number.parseInt(head.number, 16)));
      refreshBalance().catch(errorsIn("session"));
    }
  });
  socket.addEventListener("close", () => {
    if (state.socket !== socket) return;
    show("heads-status", "reconnecting");
    // Another network chosen: its heads at once; a dropped connection: again in 2 s.
    const chosen = gateway.websocketUrl() !== socket.url;
    setTimeout(followHeads, chosen ? 0 : 2000);
  });
  show("heads-status", "live");
}

async function submitRecord() {
  if (!state.address) throw new GatewayError("page.signed_out", "sign in first");
  const chainId = await gatewayChainId();
  await ensureChain((await pickWallet()).provider, chainId);
  const typedData = {
    types: {
      EIP712Domain: [
        { name: "name", type: "string" },
        { name: "version", type: "string" },
        { name: "chainId", type: "uint256" },
      ],
      Note: [
        { name: "author", type: "address" },
        { name: "text", type: "string" },
        { name: "createdAt", type: "uint256" },
      ],
    },
    primaryType: "Note",
    domain: { name: "Gateway reference page", version: "1", chainId },
    message: { author: state.address, text: $("note-text").value, createdAt: Math.floor(Date.now() / 1000) },
  };
  const signature = await walletCall("eth_signTypedData_v4", [state.address, JSON.stringify(typedData)]);
  const stored = await gateway.call("/records", { method: "POST", body: { typedData, signature } });
  show("record-id", stored.id);
  await refreshRecords();
}

/** A gasless Guestbook note: the wallet signs an ERC-2771 request, the gateway pays. */
async function signGasless() {
  if (!state.address) throw new GatewayError("page.signed_out", "sign in first");
  const chainId = await gatewayChainId();
  await ensureChain((await pickWallet()).provider, chainId);
  const info = await gateway.call(`/relay/forwarder?chainId=${chainId}&from=${state.address}`);
  const target = info.targets.find((each) => each.functions.includes("sign(string)"));
  if (!target) throw new GatewayError("page.no_gasless_target", "the relay allows no Guestbook here");
  const message = {
    from: state.address,
    to: target.address,
    value: "0",
    gas: "150000",
    nonce: info.nextNonce,
    deadline: String(Math.floor(Date.now() / 1000) + 3600),
    data: encodeFunctionData({ abi: GUESTBOOK, functionName: "sign", args: [$("note-text").value] }),
  };
  const typedData = { types: info.types, primaryType: info.primaryType, domain: info.domain, message };
  const signature = await walletCall("eth_signTypedData_v4", [state.address, JSON.stringify(typedData)]);
  // The domain it was signed over names the network that relays it.
  const body = { request: message, signature, domain: info.domain };
  let relayed = await gateway.call("/relay", { method: "POST", body });
  show("relay-id", relayed.id);
  while (!RELAY_FINAL.has(relayed.status)) {
    show("relay-status", relayed.status);
    await new Promise((resolve) => setTimeout(resolve, 500));
    relayed = await gateway.call(`/relay/${relayed.id}`);
  }
  show("relay-status", relayed.status);
  show("relay-tx", relayed.txHash ?? "");
  if (relayed.status !== "confirmed") {
    throw new GatewayError(`relay.${relayed.status}`, relayed.revertReason ?? `the request ended ${relayed.status}`);
  }
}

async function refreshRecords() {
  if (!state.address) return;
  const page = await gateway.call(`/records?signer=${state.address}&limit=20`);
  for (const record of page.items) {
    if (record.anchor && !state.verified.has(record.id)) {
      await verifyOnChain(record.id);
    }
  }
  const rows = page.items.map((record) => {
    const row = document.createElement("tr");
    row.dataset.id = record.id;
    const anchor = record.anchor ? `block ${record.anchor.blockNumber}` : "pending";
    const proof = state.verified.has(record.id) ? "verified on chain" : record.anchor ? "not verified" : "";
    for (const text of [`${record.id.slice(0, 10)}…`, record.typedData.message.text ?? "", anchor, proof]) {
      const cell = document.createElement("td");
      cell.textContent = text;
      row.append(cell);
    }
    row.className = state.verified.has(record.id) ? "verified" : record.anchor ? "anchored" : "pending";
    return row;
  });
  $("records").replaceChildren(...rows);
}

/** The record's Merkle proof, checked by MerkleAnchor.verify through the gateway's /rpc. */
async function verifyOnChain(id) {
  const proof = await gateway.call(`/records/${id}/proof`);
  const data = encodeFunctionData({
    abi: MERKLE_ANCHOR,
    functionName: "verify",
    args: [proof.root, proof.leaf, proof.proof],
  });
  // On the chain the record is anchored on (the proof names it).
  const result = await gateway.rpc("eth_call", [{ to: proof.contract, data }, "latest"], `/rpc/${proof.chainId}`);
  if (decodeFunctionResult({ abi: MERKLE_ANCHOR, functionName: "verify", data: result })) {
    state.verified.add(id);
  }
}

/** The first wallet the browser announces; without one, say what is needed. */
async function findWallet() {
  const wallets = await discoverWallets();
  if (wallets.length > 0) {
    state.wallet = wallets[0];
    show("wallet-name", state.wallet.info.name);
    $("sign-in").disabled = false;
    return;
  }
  show("wallet-name", "none found");
  $("sign-in").title = "no wallet in this browser";
  $("wallet-needed").hidden = false;
  show("needed-chain", String(await gatewayChainId()));
}

async function start() {
  show("gateway-url", gateway.base);
  $("sign-in").addEventListener("click", () => act("sign in", "session", signIn));
  $("sign-out").addEventListener("click", () => act("sign out", "session", signOut));
  $("submit-record").addEventListener("click", () => act("submit record", "records", submitRecord));
  $("gasless").addEventListener("click", () => act("gasless note", "gasless", signGasless));
  $("refresh").addEventListener("click", () =>
    act("refresh", "chain", () =>
      Promise.all([refreshNetworks(), refreshBlock(), refreshBalance(), refreshRecords()]),
    ),
  );
  $("network").addEventListener("change", () => act("choose network", "chain", changeNetwork));
  await act("load", "chain", async () => {
    await refreshNetworks();
    await refreshBlock();
    await findWallet();
    await refreshSession();
    followHeads();
  });
  setInterval(() => refreshNetworks().catch(errorsIn("chain")), 2000);
  setInterval(() => {
    const pending = [...$("records").children].some((row) => row.className !== "verified");
    if (state.address && pending) refreshRecords().catch(errorsIn("records"));
  }, 2000);
  document.body.dataset.ready = "true";
}

start();
