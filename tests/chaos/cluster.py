"""The chaos test's deployment: one anvil behind two toxiproxy "nodes", PostgreSQL and Redis
behind toxiproxy too, the anchor and relay contracts deployed, and two gateway replicas
(real `gateway serve` processes) that can be killed with -9 and started again."""

from __future__ import annotations

import json
import signal
import subprocess
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from gateway.chain import DevChain
from gateway.chain.deploy import read_deployments
from gateway.identity.keys import rotate
from tests.chaos.toxiproxy import Toxiproxy, running_toxiproxy
from tests.helpers.processes import free_port, gateway_process, wait_http

ANCHOR_KEY, RELAYER_KEY = 9, 7
NODES = ("node_a", "node_b")
TARGETS = '{"Guestbook": ["sign(string)"]}'


@dataclass
class Replica:
    index: int
    port: int
    env: dict[str, str]
    log_dir: Path
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.starts += 1
        log = self.log_dir / f"replica-{self.index}-{self.starts}.log"
        self.process = gateway_process(["serve", "--port", str(self.port)], self.env, log)
        wait_http(f"{self.url}/readyz", timeout_s=60)

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(30)

    def logs(self) -> list[dict]:
        lines = []
        for path in sorted(self.log_dir.glob(f"replica-{self.index}-*.log")):
            for line in path.read_text(errors="replace").splitlines():
                try:
                    lines.append(json.loads(line))
                except ValueError:
                    lines.append({"level": "raw", "event": line})
        return lines

    def resources(self) -> tuple[int, int]:
        """(RSS in KiB, open file descriptors) of the running process."""
        assert self.process is not None
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        rss = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS"))
        return rss, len(list(Path(f"/proc/{self.process.pid}/fd").iterdir()))


@dataclass
class Cluster:
    chain: DevChain
    toxiproxy: Toxiproxy
    replicas: list[Replica]
    anchor_contract: str
    deployments: dict[str, str]
    relayer: str
    anchorer: str


def _through(url: str, port: int) -> str:
    parts = urlsplit(url)
    user = f"{parts.username}@" if parts.username else ""
    return urlunsplit(parts._replace(netloc=f"{user}127.0.0.1:{port}"))


@contextmanager
def chaos_cluster(directory: Path, database_url: str, redis_url: str) -> Iterator[Cluster]:
    with ExitStack() as stack:
        chain = stack.enter_context(DevChain.start(log_dir=directory / "anvil"))
        toxiproxy = stack.enter_context(running_toxiproxy(directory / "toxiproxy.log"))
        nodes = [f"http://127.0.0.1:{toxiproxy.proxy(name, chain.port)}" for name in NODES]
        postgres_port = toxiproxy.proxy("postgres", urlsplit(database_url).port or 5432)
        redis_port = toxiproxy.proxy("redis", urlsplit(redis_url).port or 6379)
        anchor_owner = chain.accounts[ANCHOR_KEY]
        deployments_file = directory / "deployments.json"
        env = {
            "GATEWAY_UPSTREAMS": ",".join(nodes),
            "GATEWAY_CHAIN_ID": str(chain.chain_id),
            "GATEWAY_DATABASE_URL": _through(database_url, postgres_port),
            "GATEWAY_REDIS_URL": _through(redis_url, redis_port),
            "GATEWAY_STORAGE__MIGRATE_ON_START": "never",
            "GATEWAY_STORAGE__STATEMENT_TIMEOUT_S": "2",
            "GATEWAY_SIWE_DOMAINS": "app.example",
            "GATEWAY_LOG_FORMAT": "json",
            "GATEWAY_IDENTITY__KEYS_DIR": str(directory / "keys"),
            "GATEWAY_IDENTITY__NONCE_RATE_PER_MINUTE": "100000",
            "GATEWAY_IDENTITY__VERIFY_RATE_PER_MINUTE": "100000",
            "GATEWAY_IDENTITY__RATE_BURST": "100000",
            "GATEWAY_IDENTITY__MAX_OUTSTANDING_NONCES": "10000",
            "GATEWAY_RPC__ANONYMOUS__RATE_PER_S": "100000",
            "GATEWAY_RPC__ANONYMOUS__BURST": "100000",
            "GATEWAY_RPC__HEALTH_INTERVAL_S": "0.5",
            "GATEWAY_RECORDS__SUBMIT_RATE_PER_S": "100000",
            "GATEWAY_RECORDS__SUBMIT_BURST": "100000",
            "GATEWAY_ANCHOR__PRIVATE_KEY": anchor_owner.private_key,
            "GATEWAY_ANCHOR__INTERVAL_S": "1",
            "GATEWAY_ANCHOR__DEPLOYMENTS_FILE": str(deployments_file),
            "GATEWAY_RELAY__PRIVATE_KEY": chain.accounts[RELAYER_KEY].private_key,
            "GATEWAY_RELAY__TARGETS": TARGETS,
            "GATEWAY_RELAY__POLL_INTERVAL_S": "0.2",
        }
        for command in (["db", "upgrade"], ["contracts", "deploy"]):
            log = directory / f"{command[0]}.log"
            assert gateway_process(command, env, log).wait(120) == 0, log.read_text()
        deployed = read_deployments(deployments_file)[str(chain.chain_id)]
        rotate(directory / "keys")  # one signing key that both replicas share
        replicas = [Replica(i, free_port(), env, directory) for i in range(2)]
        for replica in replicas:
            stack.callback(replica.stop)
            replica.start()
        yield Cluster(
            chain=chain,
            toxiproxy=toxiproxy,
            replicas=replicas,
            anchor_contract=deployed["MerkleAnchor"],
            deployments=deployed,
            relayer=chain.accounts[RELAYER_KEY].address,
            anchorer=anchor_owner.address,
        )
