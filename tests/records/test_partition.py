"""PostgreSQL partitioned (packets dropped, connections left open): writes answer 503
storage.unavailable within storage.statement_timeout_s + 1 s, never a wait of minutes, and
succeed again within 5 s of the heal."""

from __future__ import annotations

import asyncio
import time
from urllib.parse import urlsplit, urlunsplit

import pytest
from eth_account import Account

from gateway.app import create_app
from tests.helpers.lane import LaneTestServer
from tests.helpers.tcpproxy import TcpProxy
from tests.records.conftest import mail, sign_typed

pytestmark = pytest.mark.integration

DEADLINE_S = 1.5


def submission() -> dict:
    account = Account.create()
    typed = mail(account.address)
    return {"typedData": typed, "signature": sign_typed(account, typed)}


@pytest.fixture(name="database_env")
def _database_env(postgres):
    return {"GATEWAY_DATABASE_URL": postgres.new_database()}


async def test_records_under_a_partition_fail_fast_and_recover(
    aiohttp_client, chain, make_settings, records_env, database_env
):
    url = urlsplit(database_env["GATEWAY_DATABASE_URL"])
    proxy = await TcpProxy(url.port).start()
    through = urlunsplit(url._replace(netloc=f"{url.username}@127.0.0.1:{proxy.port}"))
    try:
        settings = make_settings(
            upstreams=[chain.url],
            **{
                **records_env,
                "GATEWAY_DATABASE_URL": through,
                "GATEWAY_STORAGE__MIGRATE_ON_START": "always",
                "GATEWAY_STORAGE__STATEMENT_TIMEOUT_S": str(DEADLINE_S),
            },
        )
        client = await aiohttp_client(LaneTestServer(create_app(settings)))
        assert (await client.post("/records", json=submission())).status == 201
        proxy.partition()
        for _ in range(3):
            started = time.monotonic()
            response = await client.post("/records", json=submission())
            took = time.monotonic() - started
            assert response.status == 503, await response.text()
            assert (await response.json())["error"]["code"] == "storage.unavailable"
            assert took < DEADLINE_S + 1, took
        proxy.heal()
        healed = time.monotonic()
        while True:
            response = await client.post("/records", json=submission())
            if response.status == 201:
                break
            assert response.status == 503, await response.text()
            assert time.monotonic() - healed < 5, "not recovered within 5 s of the heal"
            await asyncio.sleep(0.2)
        text = await (await client.get("/metrics")).text()
        assert 'status="500"' not in text
    finally:
        await proxy.stop()
