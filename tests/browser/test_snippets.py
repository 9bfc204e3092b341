"""The docs' wallet-kit adapters, read from docs/ and run as written in the browser
against `gateway dev`: each one signs in, sees its session, and signs out. The kits' own
packages are not loaded (RainbowKit needs React); the test calls each adapter's methods in
the order the kit does, with a real wallet provider and viem."""

from __future__ import annotations

import json
import re
import urllib.request

import pytest
from selenium.webdriver.support.ui import WebDriverWait

from tests.browser.conftest import ROOT, DevGateway, wallet_script
from tests.helpers.waiting import wait_until

pytestmark = pytest.mark.integration

DOCS = sorted((ROOT / "docs").glob("*.md"))  # the frontend guide and the API reference
_IMPORT = re.compile(r"^import \{([^}]*)\} from \"[^\"]+\";$", re.MULTILINE)

PROVIDER = """
const provider = await new Promise((resolve) => {
  window.addEventListener("eip6963:announceProvider", (e) => resolve(e.detail.provider), { once: true });
  window.dispatchEvent(new Event("eip6963:requestProvider"));
});
const [address] = await provider.request({ method: "eth_requestAccounts" });
const chainId = Number.parseInt(await provider.request({ method: "eth_chainId" }), 16);
const hex = (text) => "0x" + Array.from(new TextEncoder().encode(text), (b) => b.toString(16).padStart(2, "0")).join("");
const sign = (message) => provider.request({ method: "personal_sign", params: [hex(message), address] });
const token = () => sessionStorage.getItem("gateway.session");
const sessionOf = async (value) => {
  const response = await fetch(`${GATEWAY}/auth/session`, { headers: { Authorization: `Bearer ${value}` } });
  return response.ok ? response.json() : null;
};
"""

# What each kit does with the adapter, in its order.
DRIVERS = {
    "rainbowkit": """
const nonce = await authenticationAdapter.getNonce();
const message = await authenticationAdapter.createMessage({ nonce, address, chainId });
const verified = await authenticationAdapter.verify({ message, signature: await sign(message) });
const issued = token();
const session = await sessionOf(issued);
await authenticationAdapter.signOut();
return { address, verified, session, after: await sessionOf(issued) };
""",
    "appkit": """
const params = await siweConfig.getMessageParams();
const nonce = await siweConfig.getNonce();
const message = siweConfig.createMessage({
  ...params, nonce, address: `eip155:${chainId}:${address}`, chainId, version: "1",
  iat: new Date().toISOString(),
});
const verified = await siweConfig.verifyMessage({ message, signature: await sign(message) });
const session = await siweConfig.getSession();
await siweConfig.signOut();
return { address, verified, session, after: await siweConfig.getSession() };
""",
    "viem": """
const body = await signIn(provider);
const session = await sessionOf(body.token);
return { address, verified: true, session, after: null };
""",
}


def snippet(name: str) -> str:
    marker = f"<!-- snippet: {name} -->\n```js\n"
    text = next(page.read_text() for page in DOCS if marker in page.read_text())
    start = text.index(marker) + len(marker)
    return text[start : text.index("\n```", start)]


def runnable(name: str, gateway_url: str, driver: str | None = None) -> str:
    code = _IMPORT.sub(lambda m: f"const {{{m.group(1)}}} = window.kits;", snippet(name))
    code = code.replace("export ", "").replace('"http://127.0.0.1:8080"', f'"{gateway_url}"')
    return (
        "const done = arguments[arguments.length - 1];\n"
        f"(async () => {{\n{code}\n{PROVIDER}\n{driver or DRIVERS[name]}\n}})()"
        ".then(done, (error) => done({ error: String(error && error.stack || error) }));"
    )


@pytest.mark.parametrize("name", sorted(DRIVERS))
def test_the_readme_adapter_signs_in(open_browser, dev_gateway: DevGateway, name):
    driver = open_browser(wallet_script(dev_gateway.anvil_url, account=2))
    driver.get(f"{dev_gateway.page_origin}/snippets.html")
    WebDriverWait(driver, 15).until(
        lambda d: d.execute_script("return document.body.dataset.ready") == "true"
    )
    result = driver.execute_async_script(runnable(name, dev_gateway.url))
    assert "error" not in result, result["error"]
    assert result["verified"] is True
    assert result["session"]["address"].lower() == result["address"].lower()
    assert result["session"]["chainId"] == 31337
    assert result["after"] is None  # signed out: the token no longer opens a session


def test_the_transport_per_chain_reads_each_chain(open_browser, dev_gateway: DevGateway):
    """The snippet's clients, one per network of the dev gateway (two chains): each reads
    its own chain's id over HTTP and gets its own chain's heads over the WebSocket."""
    driver = open_browser(wallet_script(dev_gateway.anvil_url, account=5))
    driver.get(f"{dev_gateway.page_origin}/snippets.html")
    WebDriverWait(driver, 15).until(
        lambda d: d.execute_script("return document.body.dataset.ready") == "true"
    )
    read = """
const clients = await clientsPerChain();
const read = [];
for (const { chainId, client, heads } of clients) {
  const head = await new Promise((resolve, reject) => {
    const unwatch = heads.watchBlocks({
      onBlock: (block) => { unwatch(); resolve(Number(block.number)); },
      onError: reject,
    });
  });
  read.push({ chainId, asked: await client.getChainId(), head });
}
return { read };
"""
    result = driver.execute_async_script(runnable("transports", dev_gateway.url, driver=read))
    assert "error" not in result, result["error"]
    assert [(r["chainId"], r["asked"]) for r in result["read"]] == [(31337, 31337), (31338, 31338)]
    assert all(r["head"] >= 0 for r in result["read"])


def test_the_readme_gasless_example_is_relayed(open_browser, dev_gateway: DevGateway):
    driver = open_browser(wallet_script(dev_gateway.anvil_url, account=3))
    driver.get(f"{dev_gateway.page_origin}/snippets.html")
    WebDriverWait(driver, 15).until(
        lambda d: d.execute_script("return document.body.dataset.ready") == "true"
    )
    # The example ends with `relayed` (the 202 body) and `from` (the wallet's address).
    script = runnable("relay", dev_gateway.url, driver="return { relayed, from };")
    result = driver.execute_async_script(script)
    assert "error" not in result, result["error"]
    assert result["relayed"]["status"] == "pending"

    def final() -> dict | None:
        url = f"{dev_gateway.url}/relay/{result['relayed']['id']}"
        with urllib.request.urlopen(url, timeout=10) as response:
            body = json.loads(response.read())
        return body if body["status"] == "confirmed" else None

    confirmed = wait_until(final, timeout_s=20, what="the README's gasless request confirmed")
    assert confirmed["from"].lower() == result["from"].lower()
