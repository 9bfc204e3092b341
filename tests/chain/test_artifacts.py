"""Committed contract artifacts are exactly what the pinned solc makes of the sources."""

import json
import subprocess
from pathlib import Path

CONTRACTS = Path(__file__).resolve().parents[2] / "contracts"


def test_artifacts_match_a_fresh_compile():
    result = subprocess.run(
        ["node", "build.mjs", "--check"],
        cwd=CONTRACTS,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr + result.stdout


def test_compiler_is_the_pinned_one():
    pinned = json.loads((CONTRACTS / "package.json").read_text())["dependencies"]["solc"]
    artifacts = CONTRACTS.parent / "gateway" / "chain" / "artifacts"
    assert sorted(artifacts.glob("*.json"))
    for artifact in artifacts.glob("*.json"):
        assert json.loads(artifact.read_text())["compiler"].startswith(f"solc {pinned}+")


def test_the_anvil_gateway_dev_asks_for_is_the_pinned_one():
    from gateway.chain.devchain import ANVIL_NPM, ANVIL_VERSION

    pinned = json.loads((CONTRACTS / "package.json").read_text())["dependencies"]
    assert pinned[ANVIL_NPM] == ANVIL_VERSION
    readme = (CONTRACTS.parent / "README.md").read_text()
    assert f"npm install {ANVIL_NPM}@{ANVIL_VERSION}" in readme
