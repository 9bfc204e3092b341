"""Every command of the README's tour and every example, run as written against one
`gateway dev` (its anvil mining every 2 s), each showing its result: a session, a block
number, a newHeads notification, a stored and anchored record, a confirmed gasless note.
The README's `127.0.0.1:8080` is this test's gateway (GATEWAY_URL for the scripts)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.processes import free_port, gateway_dev

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

ROOT = Path(__file__).resolve().parents[1]
DEV_ACCOUNT = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"


def tour_commands() -> list[str]:
    """The shell commands of the README's blocks (comments dropped, continuations joined),
    but the `make` targets: `make test` is what CI runs, `make dev` is the gateway these
    commands run against, the others are the test suite's own runs (chaos, soak, docs)."""
    text = (ROOT / "README.md").read_text()
    commands = []
    for block in re.findall(r"```sh\n(.*?)```", text, re.DOTALL):
        joined = block.replace("\\\n", " ")
        for line in joined.splitlines():
            command = re.sub(r"\s+#.*$", "", line).strip()
            if command and not command.startswith("make "):
                commands.append(command)
    return commands


@pytest.fixture(scope="module", name="dev")
def _dev(tmp_path_factory) -> Iterator[str]:
    work = tmp_path_factory.mktemp("tour")
    with gateway_dev(work, free_port(), {"GATEWAY_ANCHOR__INTERVAL_S": "1"}) as url:
        yield url


def run(command: str, gateway: str) -> str:
    # The README's own commands, run by a shell as a user pastes them.
    done = subprocess.run(  # noqa: S602
        command.replace("http://127.0.0.1:8080", gateway),
        shell=True,
        cwd=ROOT,
        env={**os.environ, "GATEWAY_URL": gateway},
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert done.returncode == 0, f"{command}\n{done.stdout}\n{done.stderr}"
    return done.stdout


def _json_docs(output: str) -> list[object]:
    """The JSON values a command printed (curl's bodies, one per line; a script's one)."""
    try:
        return [json.loads(output)]
    except ValueError:
        return [json.loads(line) for line in output.splitlines() if line.startswith(("{", "["))]


def test_the_tour_lists_every_example():
    commands = " ".join(tour_commands())
    for example in sorted(p for p in (ROOT / "examples").iterdir() if p.is_file()):
        assert f"examples/{example.name}" in commands, example.name


def test_every_tour_command_runs_and_shows_its_result(dev):
    shown = {}
    for command in tour_commands():
        shown[command] = run(command, dev)
    by_script = {
        re.search(r"examples/(\S+)", c).group(1): out
        for c, out in shown.items()
        if "examples/" in c
    }

    block, batch = _json_docs(by_script["rpc.sh"])[:2]
    assert int(block["result"], 16) >= 0
    assert [reply["id"] for reply in batch] == [1, 2]
    assert "x-gateway-cache:" in by_script["rpc.sh"].lower()

    web3 = json.loads(by_script["rpc_web3.py"])
    assert web3["chainId"] == 31337
    assert web3["blockNumber"] >= 0

    viem = json.loads(by_script["rpc_viem.mjs"])
    assert viem["chainId"] == 31337
    assert viem["blockHash"].startswith("0x")

    session = json.loads(by_script["sign_in.py"])
    assert session["address"] == DEV_ACCOUNT

    heads = json.loads(by_script["subscribe.py"])
    assert heads["newHeads"][0]["number"] > 0

    record = json.loads(by_script["signed_record.py"])
    assert record["verifiedInPython"] is True
    assert record["verifiedOnChain"] is True

    gasless = json.loads(by_script["gasless.py"])
    assert gasless["status"] == "confirmed"
    assert gasless["txHash"].startswith("0x")

    by_hand = [out for command, out in shown.items() if command.startswith("curl")]
    assert json.loads(by_hand[0])["status"] == "ok"  # /readyz
    assert json.loads(by_hand[1])["result"] == "0x7a69"


def _check_config(path: Path) -> dict:
    checked = subprocess.run(
        [sys.executable, "-m", "gateway", "check-config", "--config", str(path)],
        capture_output=True,
        text=True,
        check=False,
        env={k: v for k, v in os.environ.items() if not k.startswith(("GATEWAY_", "OTEL_"))},
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    return json.loads(checked.stdout)


def test_the_readme_settings_files_are_valid(tmp_path):
    """The README's TOML examples (one network, then two), as `gateway check-config` reads
    them."""
    text = (ROOT / "README.md").read_text()
    one, two = re.findall(r"```toml\n(.*?)```", text, re.DOTALL)
    (tmp_path / "one.toml").write_text(one)
    (tmp_path / "two.toml").write_text(two)
    effective = _check_config(tmp_path / "one.toml")
    assert [u["name"] for u in effective["upstreams"]] == ["node-a", "node-b"]
    networks = _check_config(tmp_path / "two.toml")["networks"]
    assert [(n["chain_id"], n["alias"]) for n in networks] == [(1, "mainnet"), (8453, "base")]
    assert networks[1]["rpc"]["max_lag_blocks"] == 20


def test_make_dev_takes_its_port():
    """`make dev PORT=8181` runs `gateway dev --port 8181`; with GATEWAY_PORT instead, the
    command has no --port and `gateway dev` takes the environment's (tests/test_process.py)."""
    dry = subprocess.run(
        ["make", "-n", "dev", "PORT=8181"], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert "gateway dev --port 8181" in dry.stdout
    plain = subprocess.run(
        ["make", "-n", "dev"],
        cwd=ROOT,
        env={**os.environ, "GATEWAY_PORT": "8181"},
        capture_output=True,
        text=True,
        check=True,
    )
    assert "--port" not in plain.stdout.split("gateway dev", 1)[1].splitlines()[0]
