"""Status changes reach a webhook receiver once each (after its failures are retried), every
body signed with HMAC-SHA256 over its timestamp and bytes."""

from __future__ import annotations

import asyncio
import collections
import hashlib
import hmac
import json
import time

import pytest
from aiohttp import web
from eth_account import Account

from tests.helpers.waiting import eventually
from tests.relay.conftest import Frontend

pytestmark = pytest.mark.integration

SECRET = "whsec-test-secret"
FAILURES_FIRST = 2  # each event is refused twice before it is taken


@pytest.fixture(name="receiver")
async def _receiver(aiohttp_server):
    delivered: list[dict] = []
    tries: collections.Counter[str] = collections.Counter()

    async def hook(request: web.Request) -> web.Response:
        body = await request.read()
        timestamp = request.headers["X-Gateway-Timestamp"]
        expected = (
            "sha256="
            + hmac.new(
                SECRET.encode(), timestamp.encode() + b"." + body, hashlib.sha256
            ).hexdigest()
        )
        assert hmac.compare_digest(request.headers["X-Gateway-Signature"], expected)
        assert abs(time.time() - int(timestamp)) < 60
        event = json.loads(body)
        tries[event["eventId"]] += 1
        if tries[event["eventId"]] <= FAILURES_FIRST:
            return web.Response(status=503)
        delivered.append(event)
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", hook)
    server = await aiohttp_server(app)
    server.delivered, server.tries = delivered, tries
    return server


async def test_each_status_change_is_delivered_once_signed(make_relay_client, receiver):
    client = await make_relay_client(
        GATEWAY_RELAY__WEBHOOKS=json.dumps([str(receiver.make_url("/hook"))]),
        GATEWAY_RELAY__WEBHOOK_SECRET=SECRET,
        GATEWAY_RELAY__WEBHOOK_BACKOFF_S="0.05",
    )
    frontend = Frontend(client)
    signer = Account.create()
    status, body = await frontend.submit(await frontend.build(signer, "tell the webhook"))
    assert status == 202, body

    def statuses() -> list[str] | None:
        seen = [event["status"] for event in receiver.delivered if event["id"] == body["id"]]
        return seen if "confirmed" in seen else None

    seen = await eventually(statuses, timeout_s=30, what="the confirmed event delivered")
    assert sorted(seen) == sorted(["sent", "submitted", "confirmed"])  # once each
    assert all(count == FAILURES_FIRST + 1 for count in receiver.tries.values())
    confirmed = next(e for e in receiver.delivered if e["status"] == "confirmed")
    assert confirmed["txHash"].startswith("0x")
    assert confirmed["from"] == signer.address
    await asyncio.sleep(0.5)  # more sender rounds: nothing is delivered again
    assert len(receiver.delivered) == 3


async def test_webhooks_without_a_secret_are_a_settings_error(make_settings):
    from gateway.errors import SettingsError

    with pytest.raises(SettingsError, match="webhook_secret"):
        make_settings(GATEWAY_RELAY__WEBHOOKS='["https://hooks.example/relay"]')
