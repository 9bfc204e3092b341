"""Redis and PostgreSQL die and come back: 503 with clear codes meanwhile (never 500),
health and cached reads keep working, recovery without a restart, nothing acknowledged lost."""

import pytest
from eth_account import Account

from gateway.app import create_app
from tests.helpers.metrics import sample
from tests.helpers.postgres import private_postgres
from tests.helpers.redis import PrivateRedis
from tests.helpers.waiting import eventually
from tests.identity.conftest import SignInFlow
from tests.records.conftest import mail, sign_typed

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


@pytest.fixture(name="backends")
def _backends(tmp_path):
    redis = PrivateRedis(tmp_path)
    redis.start()
    with private_postgres() as postgres:
        try:
            yield redis, postgres
        finally:
            redis.kill()


async def _status(client, method, path, **kwargs):
    response = await getattr(client, method)(path, **kwargs)
    body = await response.json() if response.content_type == "application/json" else None
    assert response.status != 500, body
    return response.status, body


@pytest.fixture(name="live")
async def _live(aiohttp_client, anvil, make_settings, backends):
    """A gateway on Redis and PostgreSQL, with records acknowledged before any outage."""
    redis, postgres = backends
    settings = make_settings(
        upstreams=[anvil.url],
        GATEWAY_CHAIN_ID="31337",
        GATEWAY_SIWE_DOMAINS="app.example",
        GATEWAY_DATABASE_URL=postgres.new_database(),
        GATEWAY_STORAGE__MIGRATE_ON_START="always",
        GATEWAY_REDIS_URL=f"{redis.url}/0",
        GATEWAY_IDENTITY__COOKIE_SECURE="false",
        GATEWAY_UPSTREAM_POOL__READINESS_TIMEOUT_S="1",
        GATEWAY_REDIS__TIMEOUT_S="0.5",
    )
    client = await aiohttp_client(create_app(settings))
    alice = Account.create()
    acknowledged = []
    for index in range(5):
        typed = mail(alice.address, contents=f"before {index}")
        status, body = await _status(
            client,
            "post",
            "/records",
            json={"typedData": typed, "signature": sign_typed(alice, typed)},
        )
        assert status == 201
        acknowledged.append(body["id"])
    await SignInFlow(client).sign_in(Account.create())
    return client, redis, postgres, alice, acknowledged


RPC = {"jsonrpc": "2.0", "id": 1, "method": "eth_chainId"}


async def test_a_redis_outage_is_503_and_heals_by_itself(live):
    client, redis, _, _, _ = live
    rpc = RPC
    # Redis down: sign-in needs it (503), health and JSON-RPC do not (limits fail open)
    redis.kill()
    status, body = await _status(client, "get", "/auth/nonce")
    assert (status, body["error"]["code"]) == (503, "redis.unavailable")
    status, body = await _status(client, "get", "/readyz")
    assert (status, body["checks"]["redis"]) == (503, "unreachable")
    assert (await _status(client, "get", "/healthz"))[0] == 200
    status, body = await _status(client, "post", "/rpc", json=rpc)
    assert status == 200, body
    metrics = await (await client.get("/metrics")).text()
    assert sample(metrics, "gateway_rate_limiter_failures_total", fail="open") >= 1

    redis.start()  # back on the same port: no restart of the gateway

    async def nonce_served() -> bool:
        return (await _status(client, "get", "/auth/nonce"))[0] == 200

    await eventually(nonce_served, what="a nonce once Redis is back")
    await SignInFlow(client).sign_in(Account.create())


async def test_a_postgres_outage_is_503_and_heals_by_itself(live):
    client, _, postgres, alice, acknowledged = live
    rpc = RPC
    # PostgreSQL down: records need it (503), health and JSON-RPC do not
    postgres.stop()
    typed = mail(alice.address, contents="during")
    status, body = await _status(
        client, "post", "/records", json={"typedData": typed, "signature": sign_typed(alice, typed)}
    )
    assert (status, body["error"]["code"]) == (503, "storage.unavailable")
    status, body = await _status(client, "get", f"/records/{acknowledged[0]}")
    assert (status, body["error"]["code"]) == (503, "storage.unavailable")
    status, body = await _status(client, "get", "/readyz")
    assert (status, body["checks"]["storage"]) == (503, "unreachable")
    assert (await _status(client, "get", "/healthz"))[0] == 200
    assert (await _status(client, "post", "/rpc", json=rpc))[0] == 200

    postgres.start()

    async def ready() -> bool:
        return (await _status(client, "get", "/readyz"))[0] == 200

    await eventually(ready, timeout_s=20, what="readiness once PostgreSQL is back")
    for record_id in acknowledged:  # nothing acknowledged was lost
        status, body = await _status(client, "get", f"/records/{record_id}")
        assert (status, body["id"]) == (200, record_id)
    status, _ = await _status(
        client, "post", "/records", json={"typedData": typed, "signature": sign_typed(alice, typed)}
    )
    assert status == 201
    metrics = await (await client.get("/metrics")).text()
    assert (
        'gateway_storage_operations_total{backend="postgresql",op="records.get",outcome="unavailable"}'
        in metrics
    )
    assert 'backend="redis"' in metrics
