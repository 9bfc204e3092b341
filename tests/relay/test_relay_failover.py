"""The relay's own calls to the nodes fail over as reads do, and a relay with no node left
answers 503 upstream.unavailable: never a 500 (a node stopped, a node that resets)."""

from __future__ import annotations

import pytest
from eth_account import Account

from gateway.app import create_app
from tests.helpers.lane import LaneTestServer
from tests.helpers.tcpproxy import proxy_to
from tests.relay.conftest import Frontend
from tests.relay.test_relay_flow import confirmed

pytestmark = pytest.mark.integration


@pytest.fixture(name="proxy")
async def _proxy(chain):
    async with proxy_to(chain.port) as proxy:
        yield proxy


async def _relay_gateway(aiohttp_client, make_settings, relay_env, upstreams: str):
    env = {**relay_env, "GATEWAY_UPSTREAMS": upstreams, "GATEWAY_RPC__HEALTH_INTERVAL_S": "0.2"}
    return await aiohttp_client(LaneTestServer(create_app(make_settings(**env))))


@pytest.mark.parametrize("fault", ["reset", "stopped"])
async def test_the_relay_goes_on_through_the_other_node(
    aiohttp_client, make_settings, relay_env, proxy, chain, guestbook, fault
):
    client = await _relay_gateway(
        aiohttp_client, make_settings, relay_env, f"{proxy.url},{chain.url}"
    )
    frontend = Frontend(client)
    if fault == "reset":
        proxy.reset_all()
    else:
        await proxy.stop()
    for note in ("one", "two", "three"):  # the pool's order is random: each may try it first
        signer = Account.create()
        status, body = await frontend.submit(await frontend.build(signer, note))
        assert status == 202, body
        final = await confirmed(frontend, body["id"])
        assert final["status"] == "confirmed", final
        assert await guestbook.last_note(signer.address) == note


async def test_a_relay_with_no_node_left_answers_503(
    aiohttp_client, make_settings, relay_env, proxy, chain
):
    client = await _relay_gateway(aiohttp_client, make_settings, relay_env, proxy.url)
    signer = Account.create()
    frontend = Frontend(client)
    body = await frontend.build(signer, "before")
    await proxy.stop()
    for response in [
        await client.get(f"/relay/forwarder?from={signer.address}"),
        await client.post("/relay", json=body),
    ]:
        assert response.status == 503, await response.text()
        error = (await response.json())["error"]
        assert error["code"] == "upstream.unavailable"
        assert error.get("requestId") or response.headers["X-Request-ID"]
    text = await (await client.get("/metrics")).text()
    assert 'status="500"' not in text
