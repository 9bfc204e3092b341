"""The wheel, installed outside the checkout, serves: what a container image or a user gets.

The wheel is built from the checkout and installed (without dependencies) into a fresh venv
whose dependencies are the test venv's, reached through a path entry (not a site dir, so
the editable install's hook to the checkout is not run). Every command runs from an empty
folder; the checkout is on no path.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import sysconfig
import urllib.request
from pathlib import Path

import pytest
from eth_account import Account

from gateway.chain import DevChain
from tests.helpers.processes import free_port, wait_http
from tests.identity.conftest import DOMAIN, ORIGIN, make_message, personal_sign
from tests.identity.test_contract_wallets import Counterfactual

pytestmark = pytest.mark.integration

CHECKOUT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module", name="installed")
def _installed(tmp_path_factory) -> Path:
    """A venv with the built wheel of this checkout; returns its bin directory."""
    work = tmp_path_factory.mktemp("install")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", work, CHECKOUT],
        check=True,
        timeout=300,
    )
    (wheel,) = work.glob("gateway-*.whl")
    venv = work / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", venv], check=True)
    site = Path(
        subprocess.run(
            [
                venv / "bin" / "python",
                "-c",
                "import sysconfig; print(sysconfig.get_paths()['purelib'])",
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    )
    (site / "test_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            venv / "bin" / "python",
            "install",
            "--no-deps",
            "--no-index",
            "--quiet",
            wheel,
        ],
        check=True,
        timeout=300,
    )
    return venv / "bin"


def _env(bin_dir: Path, **settings: str) -> dict[str, str]:
    return {"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": os.environ.get("HOME", "/tmp"), **settings}


def _settings(chain: DevChain, state: Path) -> dict[str, str]:
    return {
        "GATEWAY_UPSTREAMS": chain.url,
        "GATEWAY_CHAIN_ID": str(chain.chain_id),
        "GATEWAY_DATABASE_URL": f"sqlite:///{state / 'gw.db'}",
        "GATEWAY_IDENTITY__KEYS_DIR": str(state / "keys"),
        "GATEWAY_SIWE_DOMAINS": DOMAIN,
        "GATEWAY_LOG_FORMAT": "json",
        "GATEWAY_ANCHOR__PRIVATE_KEY": chain.accounts[0].private_key,
        "GATEWAY_ANCHOR__DEPLOYMENTS_FILE": str(state / "deployments.json"),
    }


def test_the_installed_package_is_not_the_checkout(installed, tmp_path):
    probe = "import gateway, sys; print(gateway.__file__); print(sys.path)"
    out = subprocess.run(
        [installed / "python", "-c", probe],
        cwd=tmp_path,
        env=_env(installed),
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    assert out[0].startswith(str(installed.parent)), out[0]
    paths = ast.literal_eval(out[1])
    assert str(CHECKOUT) not in paths  # (the test venv's site-packages may live inside it)
    artifacts = installed.parent.glob("lib/python*/site-packages/gateway/chain/artifacts/*.json")
    assert {path.name for path in artifacts} >= {"MerkleAnchor.json", "ValidateSigOffchain.json"}


def test_the_installed_gateway_serves(installed, tmp_path, anvil):
    empty = tmp_path / "empty"
    empty.mkdir()
    env = _env(installed, **_settings(anvil, tmp_path), GATEWAY_WEBAPP__ENABLED="true")
    check = subprocess.run(
        [installed / "gateway", "check-config"],
        cwd=empty,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert check.returncode == 0, check.stdout + check.stderr
    deploy = subprocess.run(
        [installed / "gateway", "contracts", "deploy"],
        cwd=empty,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert deploy.returncode == 0, deploy.stdout + deploy.stderr
    anchor = json.loads((tmp_path / "deployments.json").read_text())
    assert anvil.rpc("eth_getCode", [next(iter(_addresses(anchor))), "latest"]) != "0x"
    port = free_port()
    with (tmp_path / "serve.log").open("wb") as log:
        server = subprocess.Popen(
            [installed / "gateway", "serve", "--port", str(port)],
            cwd=empty,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_http(f"http://127.0.0.1:{port}/readyz", timeout_s=60)
        _contract_wallet_signs_in(f"http://127.0.0.1:{port}", anvil)
        _serves_the_reference_page(f"http://127.0.0.1:{port}")
    finally:
        server.terminate()
        server.wait(30)
    assert not list(empty.iterdir())  # nothing written to the working folder


def _serves_the_reference_page(base: str) -> None:
    """The page's files are package data: the wheel ships the bundle built from web/."""
    with urllib.request.urlopen(f"{base}/app/", timeout=10) as response:
        assert b'<script type="module" src="app.js">' in response.read()
        assert "script-src 'self'" in response.headers["Content-Security-Policy"]
    with urllib.request.urlopen(f"{base}/app/app.js", timeout=10) as response:
        bundle = response.read()
    assert bundle == (Path(__file__).parents[1] / "gateway/webapp/static/app.js").read_bytes()


def _addresses(deployments: dict) -> list[str]:
    found = []
    for value in deployments.values():
        if isinstance(value, str) and value.startswith("0x"):
            found.append(value)
        elif isinstance(value, dict):
            found += _addresses(value)
    return found


def _post(url: str, body: dict) -> tuple[int, dict]:
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", "Origin": ORIGIN},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def _contract_wallet_signs_in(base: str, chain: DevChain) -> None:
    """EIP-6492: a wallet not deployed yet; validation runs the packaged ValidateSigOffchain."""
    wallet = Counterfactual(chain, Account.create())
    with urllib.request.urlopen(f"{base}/auth/nonce", timeout=10) as response:
        nonce = json.loads(response.read())["nonce"]
    text = make_message(wallet.address, nonce)
    status, body = _post(
        f"{base}/auth/verify",
        {"message": text, "signature": wallet.wrap(personal_sign(wallet.owner, text))},
    )
    assert status == 200, body
    assert body["address"] == wallet.address


def test_gateway_dev_says_what_it_needs_without_anvil(installed, tmp_path):
    result = subprocess.run(
        [installed / "gateway", "dev", "--port", str(free_port())],
        cwd=tmp_path,
        env=_env(installed),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    said = [line for line in (result.stdout + result.stderr).splitlines() if "anvil" in line]
    assert len(said) == 1, result.stdout + result.stderr
    assert "npm install @foundry-rs/anvil-linux-amd64@" in said[0]
