"""POST /relay with PostgreSQL partitioned (packets dropped, connections left open) answers
503 storage.unavailable within storage.statement_timeout_s + 1 s and is accepted again
within 5 s of the heal; the request accepted after the heal is confirmed."""

from __future__ import annotations

import asyncio
import time
from urllib.parse import urlsplit, urlunsplit

import pytest
from eth_account import Account

from gateway.app import create_app
from tests.helpers.lane import LaneTestServer
from tests.helpers.tcpproxy import proxy_to
from tests.relay.conftest import Frontend
from tests.relay.test_relay_flow import confirmed

pytestmark = pytest.mark.integration

DEADLINE_S = 1.5


@pytest.fixture(name="database_env")
def _database_env(postgres):
    return {"GATEWAY_DATABASE_URL": postgres.new_database()}


async def test_relay_under_a_partition_fails_fast_and_recovers(
    aiohttp_client, make_settings, relay_env, database_env
):
    url = urlsplit(database_env["GATEWAY_DATABASE_URL"])
    async with proxy_to(url.port) as proxy:
        through = urlunsplit(url._replace(netloc=f"{url.username}@127.0.0.1:{proxy.port}"))
        settings = make_settings(
            **{
                **relay_env,
                "GATEWAY_DATABASE_URL": through,
                "GATEWAY_STORAGE__MIGRATE_ON_START": "always",
                "GATEWAY_STORAGE__STATEMENT_TIMEOUT_S": str(DEADLINE_S),
            }
        )
        frontend = Frontend(await aiohttp_client(LaneTestServer(create_app(settings))))
        signers = [Account.create() for _ in range(4)]
        bodies = [await frontend.build(signer, f"note {i}") for i, signer in enumerate(signers)]
        status, body = await frontend.submit(bodies[0])
        assert status == 202, body
        proxy.partition()
        for partitioned in bodies[1:3]:
            started = time.monotonic()
            status, body = await frontend.submit(partitioned)
            took = time.monotonic() - started
            assert status == 503, body
            assert body["error"]["code"] == "storage.unavailable"
            assert took < DEADLINE_S + 1, took
        proxy.heal()
        healed = time.monotonic()
        while True:
            status, body = await frontend.submit(bodies[3])
            if status == 202:
                break
            assert status == 503, body
            assert time.monotonic() - healed < 5, "not recovered within 5 s of the heal"
            await asyncio.sleep(0.2)
        assert (await confirmed(frontend, body["id"]))["status"] == "confirmed"
        text = await (await frontend.client.get("/metrics")).text()
        assert 'status="500"' not in text
