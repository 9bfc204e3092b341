"""A page of an allowed origin reads how its JSON-RPC answers were made (X-Gateway-Cache,
-Upstream, -Attempts, -Block, Server-Timing) from fetch() in a real Chromium; a page of
another origin gets no answer at all (CORS)."""

from __future__ import annotations

import pytest

from tests.browser.conftest import DevGateway

pytestmark = pytest.mark.integration

READ = """
const [gateway, done] = [arguments[0], arguments[arguments.length - 1]];
const ask = async (method, params) => {
  const response = await fetch(gateway + "/rpc", {
    method: "POST",
    headers: {"Content-Type": "application/json"},
    body: JSON.stringify({jsonrpc: "2.0", id: 1, method, params}),
  });
  const seen = {};
  for (const name of ["X-Gateway-Cache", "X-Gateway-Upstream", "X-Gateway-Attempts",
                      "X-Gateway-Block", "Server-Timing", "X-Request-ID"]) {
    seen[name] = response.headers.get(name);
  }
  seen.result = (await response.json()).result;
  return seen;
};
(async () => {
  const first = await ask("eth_getBlockByNumber", ["latest", false]);
  const second = await ask("eth_chainId", []);
  const third = await ask("eth_chainId", []);
  return {first, second, third};
})().then(done, (error) => done({error: String(error)}));
"""


def _on(open_browser, origin: str):
    driver = open_browser(None)
    driver.get(f"{origin}/snippets.html")
    return driver


def test_an_allowed_page_reads_the_explain_headers(open_browser, dev_gateway: DevGateway):
    driver = _on(open_browser, dev_gateway.page_origin)
    seen = driver.execute_async_script(READ, dev_gateway.url)
    assert "error" not in seen, seen
    first, second, third = seen["first"], seen["second"], seen["third"]
    assert first["X-Gateway-Cache"] in {"miss", "hit"}
    assert first["X-Gateway-Block"] == str(int(first["result"]["number"], 16))
    assert first["Server-Timing"].startswith("gw;dur=")
    assert first["X-Request-ID"]
    assert third["X-Gateway-Cache"] == "hit"  # the second eth_chainId at the latest
    if second["X-Gateway-Cache"] == "miss":
        assert second["X-Gateway-Upstream"]
        assert second["X-Gateway-Attempts"] == "1"
        assert "upstream;dur=" in second["Server-Timing"]


def test_a_page_of_another_origin_reads_nothing(open_browser, dev_gateway: DevGateway):
    driver = _on(open_browser, dev_gateway.other_origin)
    seen = driver.execute_async_script(READ, dev_gateway.url)
    assert "Failed to fetch" in seen.get("error", ""), seen
