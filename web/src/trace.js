// W3C trace context for user actions: each click starts a sampled trace, and every call the
// action makes carries its `traceparent`, so the click, the gateway's spans and the node calls
// are one trace. The click's own span id is the parent of the gateway's server span.

const hex = (bytes) => Array.from(bytes, (byte) => byte.toString(16).padStart(2, "0")).join("");

function randomHex(length) {
  for (;;) {
    const value = hex(crypto.getRandomValues(new Uint8Array(length)));
    if (/[^0]/.test(value)) return value; // all zeros is invalid in W3C trace context
  }
}

/** A new action: its trace id, the click's span id, and the header its calls send. */
export function newAction(name) {
  const traceId = randomHex(16);
  const spanId = randomHex(8);
  return { name, traceId, spanId, traceparent: `00-${traceId}-${spanId}-01` };
}
