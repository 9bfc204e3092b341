"""The command line with several networks: `gateway dev --chains 31337,31338` (one anvil
per chain, the contracts on each, every chain a network) and `gateway contracts deploy
--network`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request

import pytest

from tests.helpers.processes import free_port, gateway_dev

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as response:  # loopback
        return json.loads(response.read())


def _rpc(url: str, method: str) -> object:
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": []}).encode()
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:  # loopback
        return json.loads(response.read())["result"]


def test_dev_serves_one_network_per_chain(tmp_path):
    with gateway_dev(tmp_path, free_port(), {}, ["--chains", "31337,31338"]) as url:
        assert _rpc(f"{url}/rpc", "eth_chainId") == hex(31337)
        assert _rpc(f"{url}/rpc/31337", "eth_chainId") == hex(31337)
        assert _rpc(f"{url}/rpc/31338", "eth_chainId") == hex(31338)
        ready = _get(f"{url}/readyz")
        assert ready["status"] == "ok"
        assert any(name.startswith("upstream:31338:") for name in ready["checks"])
        deployed = json.loads((tmp_path / ".gateway" / "deployments.json").read_text())
        assert set(deployed) == {"31337", "31338"}
        for chain_id in (31337, 31338):
            info = _get(f"{url}/relay/forwarder?chainId={chain_id}")
            assert info["domain"]["chainId"] == chain_id
            assert info["address"] == deployed[str(chain_id)]["GatewayForwarder"]
    log = (tmp_path / "dev.log").read_text()
    assert f"{url}/rpc/31338" in log  # the banner names each network's URL


def test_contracts_deploy_on_a_named_network(tmp_path, anvil, chain_b):
    """`gateway contracts deploy --network <alias>` deploys on that network's nodes and
    records the addresses under its chain id; an unknown network is refused by name."""
    networks = [
        {"chain_id": anvil.chain_id, "upstreams": [{"url": anvil.url}]},
        {"chain_id": chain_b.chain_id, "alias": "second", "upstreams": [{"url": chain_b.url}]},
    ]
    deployments = tmp_path / "deployments.json"
    env = {
        "PATH": os.environ.get("PATH", ""),
        "GATEWAY_NETWORKS": json.dumps(networks),
        "GATEWAY_ANCHOR__PRIVATE_KEY": chain_b.accounts[0].private_key,
        "GATEWAY_ANCHOR__DEPLOYMENTS_FILE": str(deployments),
    }

    def deploy(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "gateway", "contracts", "deploy", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    refused = deploy("--network", "third")
    assert refused.returncode == 1
    assert "no network 'third'" in refused.stderr
    done = deploy("--network", "second")
    assert done.returncode == 0, done.stderr
    recorded = json.loads(deployments.read_text())
    assert set(recorded) == {str(chain_b.chain_id)}
    forwarder = recorded[str(chain_b.chain_id)]["GatewayForwarder"]
    assert chain_b.rpc("eth_getCode", [forwarder, "latest"]) != "0x"
