"""Three gateway processes on one Redis and one PostgreSQL, behind a real nginx.

Sign-ins cross replicas exactly once, a rate limit holds across them, a logout ends the
session everywhere, records written anywhere are listed everywhere, a replica killed
mid-stream costs at most its in-flight requests, and each anchor batch is one transaction.
"""

from __future__ import annotations

import asyncio
import shutil
import signal
import subprocess
from pathlib import Path

import aiohttp
import pytest
from eth_account import Account

from gateway.chain import DevChain
from gateway.identity.keys import rotate
from tests.helpers.chain import deploy
from tests.helpers.processes import free_port, gateway_process, wait_http
from tests.helpers.waiting import eventually
from tests.identity.conftest import ORIGIN, make_message, personal_sign
from tests.records.conftest import mail, sign_typed

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

NGINX = shutil.which("nginx") or (
    Path("/usr/sbin/nginx") if Path("/usr/sbin/nginx").exists() else None
)
RATE_LIMIT = 25  # anonymous JSON-RPC calls per client before the bucket is empty


def _nginx_config(directory: Path, port: int, replicas: list[int]) -> str:
    servers = "\n".join(
        f"        server 127.0.0.1:{p} max_fails=1 fail_timeout=2s;" for p in replicas
    )
    return f"""
worker_processes 1;
daemon off;
pid {directory}/nginx.pid;
error_log {directory}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {directory}/body;
    proxy_temp_path {directory}/proxy;
    fastcgi_temp_path {directory}/fastcgi;
    uwsgi_temp_path {directory}/uwsgi;
    scgi_temp_path {directory}/scgi;
    upstream gateway {{
{servers}
        keepalive 32;
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://gateway;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header X-Forwarded-For $remote_addr;
            proxy_next_upstream error timeout http_502 http_503;
            proxy_next_upstream_tries 2;
        }}
    }}
}}
"""


@pytest.fixture(scope="module", name="cluster")
def _cluster(tmp_path_factory, postgres, redis_server):
    tmp_path = tmp_path_factory.mktemp("cluster")
    if NGINX is None:
        pytest.skip("nginx not installed (make test installs it)")
    database = postgres.new_database()
    import redis as redis_sync

    redis_url = f"{redis_server}/13"
    redis_sync.Redis.from_url(redis_url).flushdb()
    with DevChain.start(log_dir=tmp_path / "anvil") as chain:
        anchor = deploy(chain, "MerkleAnchor", ["address"], [chain.accounts[9].address])
        env = {
            "GATEWAY_UPSTREAMS": chain.url,
            "GATEWAY_CHAIN_ID": "31337",
            "GATEWAY_DATABASE_URL": database,
            "GATEWAY_REDIS_URL": redis_url,
            "GATEWAY_STORAGE__MIGRATE_ON_START": "never",
            "GATEWAY_SIWE_DOMAINS": "app.example",
            "GATEWAY_SERVER__TRUST_FORWARDED_FOR": "true",
            "GATEWAY_LOG_FORMAT": "json",
            "GATEWAY_IDENTITY__KEYS_DIR": str(tmp_path / "keys"),
            "GATEWAY_IDENTITY__NONCE_RATE_PER_MINUTE": "100000",
            "GATEWAY_IDENTITY__VERIFY_RATE_PER_MINUTE": "100000",
            "GATEWAY_IDENTITY__RATE_BURST": "100000",
            "GATEWAY_IDENTITY__MAX_OUTSTANDING_NONCES": "1000",
            "GATEWAY_RPC__ANONYMOUS__RATE_PER_S": "0.001",
            "GATEWAY_RPC__ANONYMOUS__BURST": str(RATE_LIMIT),
            "GATEWAY_ANCHOR__PRIVATE_KEY": chain.accounts[9].private_key,
            "GATEWAY_ANCHOR__CONTRACT_ADDRESS": anchor,
            "GATEWAY_ANCHOR__INTERVAL_S": "0.5",
        }
        upgrade = gateway_process(["db", "upgrade"], env, tmp_path / "upgrade.log")
        assert upgrade.wait(60) == 0, (tmp_path / "upgrade.log").read_text()
        rotate(tmp_path / "keys")  # one signing key that every replica shares
        ports = [free_port() for _ in range(3)]
        processes = [
            gateway_process(["serve", "--port", str(p)], env, tmp_path / f"replica-{i}.log")
            for i, p in enumerate(ports)
        ]
        nginx_dir = tmp_path / "nginx"
        nginx_dir.mkdir()
        nginx_port = free_port()
        (nginx_dir / "nginx.conf").write_text(_nginx_config(nginx_dir, nginx_port, ports))
        nginx = subprocess.Popen(
            [str(NGINX), "-p", str(nginx_dir), "-c", str(nginx_dir / "nginx.conf")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )
        try:
            for port in ports:
                wait_http(f"http://127.0.0.1:{port}/readyz", timeout_s=60)
            wait_http(f"http://127.0.0.1:{nginx_port}/healthz", timeout_s=30)
            yield {
                "replicas": [f"http://127.0.0.1:{p}" for p in ports],
                "processes": processes,
                "lb": f"http://127.0.0.1:{nginx_port}",
                "chain": chain,
                "anchor_key": chain.accounts[9].address,
            }
        finally:
            nginx.terminate()
            nginx.wait(10)
            for process in processes:
                process.terminate()
            for process in processes:
                process.wait(30)


async def _sign_in(session, nonce_from: str, verify_at: str) -> tuple[int, str, str]:
    wallet = Account.create()
    async with session.get(f"{nonce_from}/auth/nonce") as r:
        nonce = (await r.json())["nonce"]
    text = make_message(wallet.address, nonce)
    signature = personal_sign(wallet, text)
    async with session.post(
        f"{verify_at}/auth/verify",
        json={"message": text, "signature": signature},
        headers={"Origin": ORIGIN},
    ) as r:
        body = await r.json()
        return r.status, text, signature if r.status == 200 else body["error"]["code"]


def _session() -> aiohttp.ClientSession:
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64, force_close=True))


async def test_sign_ins_cross_replicas_exactly_once(cluster):
    replicas = cluster["replicas"]
    async with _session() as session:
        outcomes = await asyncio.gather(
            *(_sign_in(session, replicas[i % 3], replicas[(i + 1) % 3]) for i in range(200))
        )
        assert [status for status, _, _ in outcomes] == [200] * 200
        replays = await asyncio.gather(
            *(
                session.post(
                    f"{replicas[(i + 2) % 3]}/auth/verify",
                    json={"message": text, "signature": signature},
                    headers={"Origin": ORIGIN},
                )
                for i, (_, text, signature) in enumerate(outcomes)
            )
        )
        assert {(r.status, (await r.json())["error"]["code"]) for r in replays} == {
            (401, "siwe.nonce.reused")
        }


async def test_a_logout_through_one_replica_ends_the_session_everywhere(cluster):
    replicas = cluster["replicas"]
    async with _session() as session:
        wallet = Account.create()
        async with session.get(f"{replicas[0]}/auth/nonce") as r:
            nonce = (await r.json())["nonce"]
        text = make_message(wallet.address, nonce)
        signed = {"message": text, "signature": personal_sign(wallet, text)}
        async with session.post(
            f"{replicas[1]}/auth/verify", json=signed, headers={"Origin": ORIGIN}
        ) as r:
            auth = {"Authorization": f"Bearer {(await r.json())['token']}"}
        for replica in replicas:
            async with session.get(f"{replica}/auth/session", headers=auth) as r:
                assert r.status == 200
        async with session.post(f"{replicas[2]}/auth/logout", headers=auth) as r:
            assert r.status == 204
        for replica in replicas:
            async with session.get(f"{replica}/auth/session", headers=auth) as r:
                assert r.status == 401


async def test_one_rate_limit_across_replicas(cluster):
    accepted = 0
    async with _session() as session:
        for index in range(RATE_LIMIT * 3):
            payload = {"jsonrpc": "2.0", "id": index, "method": "eth_chainId"}
            async with session.post(f"{cluster['lb']}/rpc", json=payload) as r:
                accepted += r.status == 200
    assert RATE_LIMIT - 1 <= accepted <= RATE_LIMIT + len(cluster["replicas"])


async def test_records_anywhere_are_listed_everywhere_and_anchored_once(cluster):
    replicas = cluster["replicas"]
    alice = Account.create()
    ids = []
    async with _session() as session:
        for index in range(12):
            typed = mail(alice.address, contents=f"cluster {index}")
            body = {"typedData": typed, "signature": sign_typed(alice, typed)}
            async with session.post(f"{replicas[index * 7 % 3]}/records", json=body) as r:
                assert r.status == 201
                ids.append((await r.json())["id"])
        for replica in replicas:
            async with session.get(f"{replica}/records?signer={alice.address}&limit=100") as r:
                assert [item["id"] for item in (await r.json())["items"]] == ids
        transactions = await _anchored(session, replicas[0], ids)
    sent = int(
        cluster["chain"].rpc("eth_getTransactionCount", [cluster["anchor_key"], "latest"]), 16
    )
    assert sent == len(transactions)  # one transaction per batch, none twice


async def _anchored(session: aiohttp.ClientSession, replica: str, ids: list[str]) -> set[str]:
    """Waits until every record has a proof; returns the anchor transactions."""

    async def proofs() -> set[str] | None:
        found = []
        for record_id in ids:
            async with session.get(f"{replica}/records/{record_id}/proof") as r:
                found.append(await r.json() if r.status == 200 else None)
        return {proof["txHash"] for proof in found} if all(found) else None

    return await eventually(proofs, timeout_s=60, what="every record anchored")


async def test_a_replica_killed_mid_stream_costs_only_its_in_flight_requests(cluster):
    failures = 0
    async with _session() as session:
        answered = 0

        async def reader(count: int) -> None:
            nonlocal failures, answered
            for _ in range(count):
                answered += 1
                try:
                    async with session.get(f"{cluster['lb']}/healthz") as r:
                        failures += r.status != 200
                except aiohttp.ClientError:
                    failures += 1

        readers = [asyncio.create_task(reader(60)) for _ in range(8)]
        await eventually(lambda: answered >= 40, what="traffic through the balancer")
        cluster["processes"][2].send_signal(signal.SIGKILL)
        await asyncio.gather(*readers)
    assert failures <= 8  # at most the one in flight of each concurrent client
