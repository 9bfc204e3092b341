"""A real Prometheus scrapes a real gateway of two networks under a scripted workload;
every dashboard query returns data for each network, every alert expression returns data,
and UpstreamDown goes pending."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess

import aiohttp
import pytest
import yaml
from eth_account import Account

from gateway.chain import DevChain
from tests.helpers.chain import deploy
from tests.helpers.processes import free_port, gateway_process, wait_http
from tests.helpers.waiting import eventually
from tests.identity.conftest import ORIGIN, make_message, personal_sign
from tests.observability.test_rules_and_dashboards import OBSERVABILITY, dashboard_exprs
from tests.records.conftest import DOMAIN, mail, sign_typed
from tests.relay.conftest import signed_body

pytestmark = pytest.mark.integration

PROMETHEUS = shutil.which("prometheus")
_VARIABLES = {
    "$__rate_interval": "20s",
    "$__range": "5m",
    "$instance": ".*",
    "$route": ".*",
    "$upstream": ".*",
}
SECOND = 31338
# Per-network queries the second network (one node) has no data for: only nodes that
# disagree, or one ahead of the others, make these.
_ONE_NODE_HAS_NONE = ("gateway_rpc_empty_retries_total", "gateway_upstream_misbehavior_total")


def _substitute(expr: str, network: str = ".*") -> str:
    for name, value in {**_VARIABLES, "$network": network}.items():
        expr = expr.replace(name, value)
    return expr


def _alert_series(expr: str) -> str:
    """The series part of '<series> <comparison> <threshold>'."""
    return re.split(r"\s(?:>|<|==|>=|<=|!=)\s[-0-9.e]+\s*$", expr.strip())[0]


@pytest.fixture(name="stack")
def _stack(tmp_path):
    if PROMETHEUS is None:
        if os.environ.get("CI"):
            pytest.fail("prometheus is missing: scripts/system-deps.sh installs it in CI")
        pytest.skip("prometheus not installed (make test installs it)")
    with (
        DevChain.start(log_dir=tmp_path / "a") as chain_a,
        DevChain.start(log_dir=tmp_path / "b") as chain_b,
        DevChain.start(log_dir=tmp_path / "c") as chain_c,
        DevChain.start(chain_id=SECOND, log_dir=tmp_path / "d") as chain_d,
    ):
        # The nodes are one network to the gateway (its own calls go to any): the same
        # contracts at the same addresses on each (same deployer, same nonces).
        # The second network, chain_d alone, gets the same ones, at the same addresses too.
        deployed = []
        for chain in (chain_a, chain_b, chain_c, chain_d):
            anchor = deploy(chain, "MerkleAnchor", ["address"], [chain.accounts[9].address])
            forwarder = deploy(chain, "GatewayForwarder")
            guestbook = deploy(chain, "Guestbook", ["address"], [forwarder])
            deployed.append((anchor, forwarder, guestbook))
        assert deployed[0] == deployed[1] == deployed[2] == deployed[3]
        port = free_port()
        networks = [
            {
                "chain_id": 31337,
                "upstreams": [
                    {"url": chain_a.url, "ws_url": chain_a.ws_url},
                    {"url": chain_b.url},
                    {"url": chain_c.url},
                ],
            },
            {
                "chain_id": SECOND,
                "upstreams": [{"url": chain_d.url, "ws_url": chain_d.ws_url}],
                "anchor": {"contract_address": anchor},
                "relay": {"forwarder_address": forwarder},
            },
        ]
        env = {
            "GATEWAY_NETWORKS": json.dumps(networks),
            "GATEWAY_SIWE_DOMAINS": "app.example",
            "GATEWAY_DATABASE_URL": f"sqlite:///{tmp_path / 'gw.db'}",
            "GATEWAY_IDENTITY__KEYS_DIR": str(tmp_path / "keys"),
            "GATEWAY_LOG_FORMAT": "json",
            "GATEWAY_ANCHOR__PRIVATE_KEY": chain_a.accounts[9].private_key,
            "GATEWAY_ANCHOR__CONTRACT_ADDRESS": anchor,
            "GATEWAY_ANCHOR__INTERVAL_S": "1",
            "GATEWAY_RPC__HEALTH_INTERVAL_S": "0.5",
            "GATEWAY_RPC__HEALTH_TIMEOUT_S": "0.5",
            "GATEWAY_RPC__MAX_LAG_BLOCKS": "1000",
            "GATEWAY_RPC__ANONYMOUS__RATE_PER_S": "20",
            "GATEWAY_RPC__ANONYMOUS__BURST": "40",
            "GATEWAY_RELAY__PRIVATE_KEY": chain_a.accounts[8].private_key,
            "GATEWAY_RELAY__FORWARDER_ADDRESS": forwarder,
            "GATEWAY_RELAY__TARGETS": json.dumps({guestbook: ["sign(string)"]}),
            "GATEWAY_RPC__CONSENSUS__RULES": json.dumps(
                [{"methods": ["eth_getBalance"], "participants": 3, "agreement": 2}]
            ),
            "GATEWAY_RPC__CONSENSUS__PUNISH_S": "1",
        }
        gateway = gateway_process(["serve", "--port", str(port)], env, tmp_path / "gateway.log")
        prom_port = free_port()
        (tmp_path / "alerts.yml").write_text((OBSERVABILITY / "alerts.yml").read_text())
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": ["alerts.yml"],
            "scrape_configs": [
                {"job_name": "gateway", "static_configs": [{"targets": [f"127.0.0.1:{port}"]}]}
            ],
        }
        (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
        with (tmp_path / "prometheus.log").open("wb") as log:
            prometheus = subprocess.Popen(
                [
                    PROMETHEUS,
                    f"--config.file={tmp_path / 'prometheus.yml'}",
                    f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                    f"--web.listen-address=127.0.0.1:{prom_port}",
                    "--enable-feature=exemplar-storage",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=tmp_path,
            )
        try:
            wait_http(f"http://127.0.0.1:{port}/readyz", timeout_s=60)
            wait_http(f"http://127.0.0.1:{prom_port}/-/ready", timeout_s=60)
            yield {
                "gateway": f"http://127.0.0.1:{port}",
                "prometheus": f"http://127.0.0.1:{prom_port}",
                "chain_b": chain_b,
                "chain_c": chain_c,
                "chain_d": chain_d,
            }
        finally:
            for process in (gateway, prometheus):
                process.terminate()
                process.wait(20)


async def _workload(session: aiohttp.ClientSession, base: str) -> None:
    async def rpc(method, params=None):
        async with session.post(
            f"{base}/rpc",
            json={"jsonrpc": "2.0", "id": 1, "method": method, "params": params or []},
        ) as r:
            return r.status, await r.json()

    # sign-ins: good and bad
    for _ in range(3):
        wallet = Account.create()
        async with session.get(f"{base}/auth/nonce") as r:
            nonce = (await r.json())["nonce"]
        text = make_message(wallet.address, nonce)
        async with session.post(
            f"{base}/auth/verify",
            json={"message": text, "signature": personal_sign(wallet, text)},
            headers={"Origin": ORIGIN},
        ) as r:
            assert r.status == 200
        async with session.post(
            f"{base}/auth/verify",
            json={"message": text, "signature": personal_sign(Account.create(), text)},
            headers={"Origin": ORIGIN},
        ) as r:
            assert r.status == 401
    # JSON-RPC: cached, uncached, denied, and over the limit
    for _ in range(30):
        await rpc("eth_chainId")
        await rpc("eth_blockNumber")
        await rpc("eth_getBalance", ["0x" + "00" * 20, "latest"])
    await rpc("admin_peers")
    statuses = [(await rpc("eth_chainId"))[0] for _ in range(60)]
    assert 429 in statuses
    # records
    alice = Account.create()
    for index in range(5):
        typed = mail(alice.address, contents=f"e2e {index}")
        async with session.post(
            f"{base}/records", json={"typedData": typed, "signature": sign_typed(alice, typed)}
        ) as r:
            assert r.status == 201
    typed = mail(alice.address, message={"deadline": 1})
    async with session.post(
        f"{base}/records", json={"typedData": typed, "signature": sign_typed(alice, typed)}
    ) as r:
        assert r.status == 422
    async with session.get(f"{base}/nope") as r:
        assert r.status == 404
    # a gasless request relayed to confirmation, and one refused
    signer = Account.create()
    async with session.get(f"{base}/relay/forwarder?from={signer.address}") as r:
        info = await r.json()
    async with session.post(f"{base}/relay", json=signed_body(info, signer, "e2e")) as r:
        assert r.status == 202, await r.text()
        request_id = (await r.json())["id"]
    async with session.post(f"{base}/relay", json=signed_body(info, signer, "x", nonce=5)) as r:
        assert r.status == 409

    async def relayed() -> bool:
        async with session.get(f"{base}/relay/{request_id}") as r:
            return (await r.json())["status"] == "confirmed"

    await eventually(relayed, timeout_s=30, what="the relayed request confirmed")


async def _second_network(session: aiohttp.ClientSession, base: str) -> None:
    """Reads, a record and a gasless request on the second network."""
    for method in ("eth_chainId", "eth_blockNumber", "eth_chainId"):
        payload = {"jsonrpc": "2.0", "id": 1, "method": method, "params": []}
        async with session.post(f"{base}/rpc/{SECOND}", json=payload) as r:
            assert "result" in await r.json()
    payload = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "eth_getBalance",
        "params": ["0x" + "22" * 20, "latest"],
    }
    async with session.post(f"{base}/rpc/{SECOND}", json=payload) as r:
        reply = await r.json()  # the [rpc] consensus rule, with one node on this network
        assert reply["error"]["code"] == -32003, reply
    alice = Account.create()
    typed = mail(alice.address, contents="second network", domain={**DOMAIN, "chainId": SECOND})
    async with session.post(
        f"{base}/records", json={"typedData": typed, "signature": sign_typed(alice, typed)}
    ) as r:
        assert r.status == 201, await r.text()
    signer = Account.create()
    async with session.get(f"{base}/relay/forwarder?chainId={SECOND}&from={signer.address}") as r:
        info = await r.json()
    body = {**signed_body(info, signer, "second"), "domain": info["domain"]}
    async with session.post(f"{base}/relay", json=body) as r:
        assert r.status == 202, await r.text()
        request_id = (await r.json())["id"]

    async def relayed() -> bool:
        async with session.get(f"{base}/relay/{request_id}") as r:
            return (await r.json())["status"] == "confirmed"

    await eventually(relayed, timeout_s=30, what="the second network's request confirmed")


async def _checked_across_nodes(session: aiohttp.ClientSession, base: str, chain_c) -> None:
    """Node C alone moves on: a different balance (consensus outvotes it) and transactions
    the others lack (receipts they answer null are asked again of C)."""

    async def rpc(method, params):
        payload = {"jsonrpc": "2.0", "id": 1, "method": method, "params": params}
        async with session.post(f"{base}/rpc", json=payload) as r:
            return await r.json()

    who = "0x" + "5c" * 20
    chain_c.rpc("anvil_setBalance", [who, hex(12345)])
    assert (await rpc("eth_getBalance", [who, "latest"]))["result"] == "0x0"
    sender = chain_c.accounts[5].address
    sent = [
        chain_c.rpc("eth_sendTransaction", [{"from": sender, "to": who, "value": hex(1)}])
        for _ in range(8)
    ]
    await asyncio.sleep(1.5)  # the next head poll sees C ahead
    for tx_hash in sent:
        reply = await rpc("eth_getTransactionReceipt", [tx_hash])
        assert reply["result"] is not None, reply


async def _query(session, prometheus: str, expr: str) -> list:
    async with session.get(f"{prometheus}/api/v1/query", params={"query": expr}) as r:
        body = await r.json()
    assert body["status"] == "success", (expr, body)
    return body["data"]["result"]


async def _without_data(session: aiohttp.ClientSession, prometheus: str) -> list[str]:
    """Dashboard queries (each network's, for per-network ones) and alert series that
    Prometheus has no data for."""
    empty = []
    for board, title, expr in dashboard_exprs():
        if expr.startswith("label_values"):
            continue
        networks = ["31337", str(SECOND)] if "$network" in expr else [".*"]
        for network in networks:
            if network == str(SECOND) and any(name in expr for name in _ONE_NODE_HAS_NONE):
                continue
            if not await _query(session, prometheus, _substitute(expr, network)):
                empty.append(f"{board} / {title} (network {network}): {expr}")
    groups = yaml.safe_load((OBSERVABILITY / "alerts.yml").read_text())["groups"]
    for rule in (rule for group in groups for rule in group["rules"]):
        series = _alert_series(rule["expr"])
        if not await _query(session, prometheus, series):
            empty.append(f"alert {rule['alert']}: {series}")
    return empty


@pytest.mark.timeout(240)
async def test_every_dashboard_query_and_alert_returns_data(stack):
    base, prometheus = stack["gateway"], stack["prometheus"]
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(base.replace("http", "ws") + "/rpc") as ws,
        session.ws_connect(base.replace("http", "ws") + f"/rpc/{SECOND}") as ws_second,
    ):
        for each in (ws, ws_second):
            await each.send_json(
                {"jsonrpc": "2.0", "id": 1, "method": "eth_subscribe", "params": ["newHeads"]}
            )
            assert "result" in json.loads((await each.receive(timeout=10)).data)
        await _workload(session, base)
        await _second_network(session, base)
        await _checked_across_nodes(session, base, stack["chain_c"])
        # an upstream failure: reads that land on B fail over, B goes down
        stack["chain_b"].stop()
        for _ in range(40):
            async with session.post(
                f"{base}/rpc",
                json={
                    "jsonrpc": "2.0",
                    "id": 1,
                    "method": "eth_getBalance",
                    "params": ["0x" + "11" * 20, "latest"],
                },
            ) as r:
                await r.read()
            await asyncio.sleep(0.1)
        for network in ("31337", str(SECOND)):
            confirmed = (
                f'gateway_anchor_batches_total{{network="{network}",outcome="confirmed"}} > 0'
            )
            await eventually(  # each network's anchor batch, scraped
                lambda confirmed=confirmed: _query(session, prometheus, confirmed),
                timeout_s=60,
                what=f"the anchor batch of network {network} in Prometheus",
            )

        async def all_have_data() -> bool:  # rate() and increase() need scrapes after traffic
            return not await _without_data(session, prometheus)

        try:
            await eventually(all_have_data, timeout_s=30, what="data for every query")
        except AssertionError:
            missing = await _without_data(session, prometheus)
            pytest.fail("queries without data:\n" + "\n".join(missing))

        async with session.get(f"{prometheus}/api/v1/alerts") as r:
            alerts = (await r.json())["data"]["alerts"]
        down = [a for a in alerts if a["labels"]["alertname"] == "UpstreamDown"]
        assert down, alerts
        assert down[0]["state"] in {"pending", "firing"}
        assert down[0]["labels"]["upstream"] == f"127.0.0.1:{stack['chain_b'].port}"
