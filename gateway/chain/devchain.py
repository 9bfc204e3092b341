"""Starts and stops a local anvil: the one launcher `gateway dev` and the test fixtures share."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from eth_account import Account

# anvil's well-known development mnemonic: its accounts are funded and public knowledge.
DEV_MNEMONIC = "test test test test test test test test test test test junk"
# The npm package and version contracts/package.json pins (a test keeps them equal).
ANVIL_NPM = "@foundry-rs/anvil-linux-amd64"
ANVIL_VERSION = "1.7.1"
_ANVIL_IN_NODE_MODULES = Path("node_modules") / ANVIL_NPM / "bin" / "anvil"
_LISTENING = re.compile(rb"Listening on ([0-9.]+):(\d+)")


class DevChainError(RuntimeError):
    """anvil is missing, did not start, or did not answer."""


@dataclass(frozen=True, slots=True)
class DevAccount:
    address: str
    private_key: str


def find_anvil(environ: Mapping[str, str] = os.environ) -> Path:
    """GATEWAY_ANVIL, else the npm package in the cwd's node_modules or contracts/ (of the
    cwd or this checkout), else ``anvil`` on PATH."""
    if explicit := environ.get("GATEWAY_ANVIL"):
        return Path(explicit)
    checkout = Path(__file__).resolve().parents[2]
    for root in (Path.cwd(), Path.cwd() / "contracts", checkout / "contracts"):
        candidate = root / _ANVIL_IN_NODE_MODULES
        if candidate.is_file():
            return candidate
    if on_path := shutil.which("anvil"):
        return Path(on_path)
    raise DevChainError(
        f"anvil not found: gateway dev needs it; run `npm install {ANVIL_NPM}@{ANVIL_VERSION}` "
        "here, or put Foundry's anvil on PATH, or set GATEWAY_ANVIL to its path"
    )


def dev_accounts(count: int = 10) -> list[DevAccount]:
    Account.enable_unaudited_hdwallet_features()
    accounts = []
    for index in range(count):
        account = Account.from_mnemonic(DEV_MNEMONIC, account_path=f"m/44'/60'/0'/0/{index}")
        accounts.append(DevAccount(account.address, "0x" + account.key.hex().removeprefix("0x")))
    return accounts


@dataclass(slots=True)
class DevChain:
    """A running anvil on loopback. Use ``DevChain.start()`` as a context manager."""

    port: int
    chain_id: int
    process: subprocess.Popen[bytes]
    log_path: Path
    args: Sequence[str]
    accounts: list[DevAccount] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    @classmethod
    @contextlib.contextmanager
    def start(  # noqa: PLR0913  # anvil's knobs
        cls,
        *,
        port: int = 0,
        chain_id: int = 31337,
        block_time_s: float | None = None,
        extra_args: Sequence[str] = (),
        log_dir: Path | None = None,
        startup_timeout_s: float = 20.0,
    ) -> Iterator[DevChain]:
        """anvil on loopback (``port=0``: a free one), answering, until the block ends."""
        args = [
            str(find_anvil()),
            "--host",
            "127.0.0.1",
            "--chain-id",
            str(chain_id),
            "--mnemonic",
            DEV_MNEMONIC,
            "--accounts",
            "10",
        ]
        if block_time_s is not None:
            args += ["--block-time", str(block_time_s)]
        args += list(extra_args)
        directory = log_dir or Path(tempfile.mkdtemp(prefix="anvil-"))
        directory.mkdir(parents=True, exist_ok=True)
        chain = cls(
            port=port,
            chain_id=chain_id,
            process=_spawn(args, port, directory / "anvil.log"),
            log_path=directory / "anvil.log",
            args=args,
            accounts=dev_accounts(),
        )
        try:
            chain._await_ready(startup_timeout_s)
            yield chain
        finally:
            chain.stop()

    def _await_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise DevChainError(f"anvil exited with {self.process.returncode}: {self._tail()}")
            if self.port == 0:
                match = _LISTENING.search(self.log_path.read_bytes())
                if match:
                    self.port = int(match.group(2))
            if self.port and self._answers():
                return
            time.sleep(0.05)
        self.stop()
        raise DevChainError(f"anvil did not answer within {timeout_s}s: {self._tail()}")

    def _answers(self) -> bool:
        try:
            return int(str(self.rpc("eth_chainId")), 16) == self.chain_id
        except (OSError, ValueError, urllib.error.URLError):
            return False

    def _tail(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-500:]
        except OSError:
            return ""

    def rpc(self, method: str, params: list[object] | None = None) -> object:
        """A blocking JSON-RPC call, for fixtures and the dev launcher (not the hot path)."""
        body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params or []})
        request = urllib.request.Request(  # noqa: S310  # loopback http URL built above
            self.url, data=body.encode(), headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310
            reply = json.loads(response.read())
        if "error" in reply:
            raise DevChainError(f"{method}: {reply['error']}")
        return reply["result"]

    @property
    def running(self) -> bool:
        return self.process.poll() is None

    def stop(self, timeout_s: float = 10.0) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def restart(self, timeout_s: float = 20.0) -> None:
        """Start anvil again on the same port (a fresh chain state)."""
        self.stop()
        self.process = _spawn(self.args, self.port, self.log_path)
        self._await_ready(timeout_s)


def _spawn(args: Sequence[str], port: int, log_path: Path) -> subprocess.Popen[bytes]:
    # anvil logs every call; a file, not a pipe, so a busy chain never blocks on a full pipe.
    with log_path.open("wb") as log:
        return subprocess.Popen(  # noqa: S603  # our own argv, no shell
            [*args, "--port", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
