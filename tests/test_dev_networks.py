"""`gateway dev --chains 31337,31338`: one anvil per chain, the contracts on each, and
every chain a network of the gateway."""

from __future__ import annotations

import json
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
