// The gateway's HTTP API as the page uses it: every call carries the current action's
// traceparent and the session token (Authorization: Bearer; cookies do not cross origins),
// and every failure becomes a GatewayError with the gateway's stable error code.

const TOKEN_KEY = "gateway.session";

const RPC_CODES = new Map([
  [-32005, "rpc.rate_limited"],
  [-32002, "rpc.upstream_unavailable"],
  [-32601, "rpc.method_not_allowed"],
  [-32602, "rpc.invalid_params"],
  [-32600, "rpc.invalid_request"],
]);

export class GatewayError extends Error {
  constructor(code, message, status = 0) {
    super(message);
    this.code = code;
    this.status = status;
  }
}

function errorOf(status, data, fallback) {
  const error = data && typeof data === "object" ? data.error : undefined;
  if (error && typeof error.code === "number") {
    return new GatewayError(RPC_CODES.get(error.code) ?? `rpc.${error.code}`, error.message, status);
  }
  if (error && typeof error.code === "string") return new GatewayError(error.code, error.message, status);
  return new GatewayError(`http.${status}`, fallback, status);
}

export function createGateway(base) {
  let token = sessionStorage.getItem(TOKEN_KEY);
  let action = null;
  let nextId = 1;
  let rpcPath = "/rpc"; // the chosen network's (GET /networks lists them)

  async function call(path, { method = "GET", body, accept = "application/json" } = {}) {
    const headers = { Accept: accept };
    if (action) headers.traceparent = action.traceparent;
    if (token) headers.Authorization = `Bearer ${token}`;
    if (body !== undefined) headers["Content-Type"] = "application/json";
    let response;
    try {
      response = await fetch(base + path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch {
      throw new GatewayError(
        "page.gateway_unreachable",
        "the gateway did not answer this page (it is down, or this page's origin is not allowed)",
      );
    }
    if (response.status === 204) return null;
    const text = await response.text();
    let data = null;
    try {
      data = text ? JSON.parse(text) : null;
    } catch {
      data = text;
    }
    if (!response.ok) throw errorOf(response.status, data, response.statusText);
    return data;
  }

  /** A JSON-RPC call on the chosen network, or on the one at `path` ("/rpc/31338"). */
  async function rpc(method, params = [], path = rpcPath) {
    const reply = await call(path, {
      method: "POST",
      body: { jsonrpc: "2.0", id: nextId++, method, params },
    });
    if (reply.error) throw errorOf(200, reply, reply.error.message);
    return reply.result;
  }

  return {
    base,
    call,
    rpc,
    get signedIn() {
      return token !== null;
    },
    setAction(value) {
      action = value;
    },
    setNetwork(path) {
      rpcPath = path;
    },
    setToken(value) {
      token = value;
      if (value === null) sessionStorage.removeItem(TOKEN_KEY);
      else sessionStorage.setItem(TOKEN_KEY, value);
    },
    websocketUrl() {
      return `${base.replace(/^http/, "ws")}${rpcPath}`;
    },
  };
}
