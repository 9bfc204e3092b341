"""The real console script: graceful SIGTERM, and `gateway dev` bringing up anvil + gateway."""

import asyncio
import json
import os
import signal
import subprocess
import sys
import urllib.request

import aiohttp
import pytest
from aiohttp import web

from tests.helpers.fake_node import head_poll_reply
from tests.helpers.metrics import sample
from tests.helpers.processes import free_port, gateway_process, wait_http
from tests.helpers.waiting import eventually, wait_until

pytestmark = pytest.mark.integration


async def _node_answering_after(aiohttp_server, delay_s: float):
    """A node that takes ``delay_s`` to answer: a fault anvil will not produce on demand."""

    async def rpc(request: web.Request) -> web.Response:
        body = await request.json()
        server.bodies.append(body)
        if isinstance(body, list):  # the pool's head polls: a node in rotation reports a head
            return head_poll_reply(body)
        await asyncio.sleep(delay_s)
        return web.json_response({"jsonrpc": "2.0", "id": body["id"], "result": "0x7a69"})

    app = web.Application()
    app.router.add_post("/", rpc)
    server = await aiohttp_server(app)
    server.bodies = []
    return server


@pytest.fixture(name="slow_node")
async def _slow_node(aiohttp_server):
    return await _node_answering_after(aiohttp_server, 1.5)


@pytest.fixture(name="slowish_node")
async def _slowish_node(aiohttp_server):
    return await _node_answering_after(aiohttp_server, 0.4)


def serve_on(node, tmp_path, **env: str) -> tuple[int, subprocess.Popen]:
    """``gateway serve`` on a free port with ``node`` as its only upstream."""
    port = free_port()
    process = gateway_process(
        ["serve", "--port", str(port)],
        {
            "GATEWAY_UPSTREAMS": f"http://127.0.0.1:{node.port}",
            "GATEWAY_DATABASE_URL": f"sqlite:///{tmp_path / 'gw.db'}",
            "GATEWAY_LOG_FORMAT": "json",
            "GATEWAY_UPSTREAM_POOL__READINESS_TIMEOUT_S": "5",
            **env,
        },
        tmp_path / "gateway.log",
    )
    return port, process


def assert_answered_while_stopping(tmp_path, route: str) -> None:
    """The access line of ``route`` falls between "shutting down" and "stopped"."""
    lines = [json.loads(l) for l in (tmp_path / "gateway.log").read_text().splitlines()]
    events = [(l["event"], l.get("route")) for l in lines]
    assert (
        events.index(("shutting down", None))
        < events.index(("request", route))
        < events.index(("stopped", None))
    )


async def test_sigterm_lets_an_in_flight_request_finish(slow_node, tmp_path):
    port, process = serve_on(slow_node, tmp_path)
    try:
        await asyncio.to_thread(wait_http, f"http://127.0.0.1:{port}/healthz")
        async with aiohttp.ClientSession() as session:
            seen = len(slow_node.bodies)
            in_flight = asyncio.create_task(session.get(f"http://127.0.0.1:{port}/readyz"))
            await eventually(  # the readiness check is now waiting on the slow node
                lambda: any(
                    isinstance(body, dict) and body.get("method") == "eth_chainId"
                    for body in slow_node.bodies[seen:]
                ),
                what="the readiness call at the node",
            )
            process.send_signal(signal.SIGTERM)
            response = await in_flight
            assert response.status == 200
            assert (await response.json())["status"] == "ok"
        assert await asyncio.to_thread(process.wait, 15) == 0
    finally:
        process.kill()
        process.wait(10)
    assert_answered_while_stopping(tmp_path, "/readyz")


async def test_sigterm_lets_a_record_in_the_lane_finish(slowish_node, tmp_path):
    """A record the lane is answering (its contract wallet asked of the slow node) is
    answered before the process stops, as a request on aiohttp's path would be."""
    from eth_account import Account  # only this test signs

    from tests.records.conftest import mail, sign_typed

    port, process = serve_on(slowish_node, tmp_path, GATEWAY_CHAIN_ID="31337")
    account = Account.create()
    typed = mail(account.address)
    wallet = "0x" + "ab" * 20  # a contract wallet: its check goes to the node
    payload = {"typedData": typed, "signature": sign_typed(account, typed), "signer": wallet}
    try:
        await asyncio.to_thread(wait_http, f"http://127.0.0.1:{port}/healthz")
        async with aiohttp.ClientSession() as session:
            seen = len(slowish_node.bodies)
            in_flight = asyncio.create_task(
                session.post(f"http://127.0.0.1:{port}/records", json=payload)
            )
            await eventually(
                lambda: any(
                    isinstance(body, dict) and body.get("method") != "eth_chainId"
                    for body in slowish_node.bodies[seen:]
                ),
                what="the wallet check at the node",
            )
            async with session.get(f"http://127.0.0.1:{port}/metrics") as scrape:
                text = await scrape.text()
            # The record in the lane and this scrape.
            assert sample(text, "gateway_http_requests_in_flight") == 2
            process.send_signal(signal.SIGTERM)
            response = await in_flight
            assert response.content_type == "application/json"
            assert response.status < 500
        assert await asyncio.to_thread(process.wait, 15) == 0
    finally:
        process.kill()
        process.wait(10)
    assert_answered_while_stopping(tmp_path, "/records")


def test_gateway_dev_brings_up_anvil_and_the_gateway(tmp_path):
    port = free_port()
    log = tmp_path / "dev.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "gateway", "dev", "--port", str(port), "--log-format", "json"],
            cwd=tmp_path,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "GATEWAY_ANCHOR__INTERVAL_S": "1"},
        )
    try:
        wait_http(f"http://127.0.0.1:{port}/readyz", timeout_s=60)
        process.send_signal(signal.SIGINT)
        assert process.wait(20) == 0
    finally:
        process.kill()
        process.wait(10)
    text = log.read_text()
    assert f"http://127.0.0.1:{port}/docs" in text
    assert "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266" in text
    assert (tmp_path / ".gateway" / "gateway.db").exists()
    anvil_url = next(l.split()[1] for l in text.splitlines() if l.strip().startswith("anvil"))
    wait_until(lambda: not _answers(anvil_url), what="anvil to stop with the gateway")


async def test_gateway_dev_takes_its_port_from_the_environment_and_its_chain_is_live(tmp_path):
    """GATEWAY_PORT as `serve` takes it; the dev chain mines every 2 s, so a newHeads
    subscription hears of a block within 3 s with no transaction sent."""
    import aiohttp

    port = free_port()
    log = tmp_path / "dev.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "gateway", "dev", "--log-format", "json"],
            cwd=tmp_path,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "GATEWAY_PORT": str(port)},
        )
    try:
        await asyncio.to_thread(wait_http, f"http://127.0.0.1:{port}/readyz", timeout_s=60)
        async with (
            aiohttp.ClientSession() as session,
            session.ws_connect(f"http://127.0.0.1:{port}/rpc") as ws,
        ):
            await ws.send_json(
                {"jsonrpc": "2.0", "id": 1, "method": "eth_subscribe", "params": ["newHeads"]}
            )
            assert "result" in await ws.receive_json(timeout=10)
            heard = await ws.receive_json(timeout=3)
            assert heard["method"] == "eth_subscription"
            assert int(heard["params"]["result"]["number"], 16) > 0
        process.send_signal(signal.SIGINT)
        assert process.wait(20) == 0
    finally:
        process.kill()
        process.wait(10)


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2):
            return True
    except urllib.error.HTTPError:
        return True  # it answered, if not with 200
    except OSError:
        return False
