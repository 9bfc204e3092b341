import pytest

from gateway.app import create_app
from gateway.chain import DevChain
from tests.helpers.processes import free_port

pytestmark = pytest.mark.integration


async def test_healthz(gateway):
    response = await gateway.get("/healthz")
    assert response.status == 200
    assert await response.json() == {"status": "ok"}


async def test_readyz_names_each_check(gateway, anvil):
    response = await gateway.get("/readyz")
    assert response.status == 200
    body = await response.json()
    assert body == {
        "status": "ok",
        "checks": {"storage": "ok", f"upstream:127.0.0.1:{anvil.port}": "ok"},
    }


async def test_readyz_follows_the_node_down_and_up(aiohttp_client, make_settings, tmp_path):
    with DevChain.start(log_dir=tmp_path / "anvil") as chain:
        settings = make_settings(
            upstreams=[chain.url], GATEWAY_UPSTREAM_POOL__READINESS_TIMEOUT_S="1"
        )
        client = await aiohttp_client(create_app(settings))
        assert (await client.get("/readyz")).status == 200

        chain.stop()
        down = await client.get("/readyz")
        assert down.status == 503
        body = await down.json()
        assert body["error"]["code"] == "not_ready"
        assert "upstream" in body["error"]["message"]
        assert body["checks"][f"upstream:127.0.0.1:{chain.port}"] == "unreachable"
        assert body["checks"]["storage"] == "ok"

        chain.restart()
        assert (await client.get("/readyz")).status == 200


async def test_readyz_refuses_an_upstream_on_the_wrong_chain(aiohttp_client, anvil, make_settings):
    settings = make_settings(upstreams=[anvil.url], GATEWAY_CHAIN_ID="1")
    client = await aiohttp_client(create_app(settings))
    response = await client.get("/readyz")
    assert response.status == 503
    checks = (await response.json())["checks"]
    assert checks[f"upstream:127.0.0.1:{anvil.port}"] == "wrong chain 31337 (want 1)"


async def test_readyz_reports_storage_failure(aiohttp_client, anvil, make_settings):
    closed = free_port()  # nothing listens there
    settings = make_settings(
        upstreams=[anvil.url],
        GATEWAY_DATABASE_URL=f"postgresql://gw:pw@127.0.0.1:{closed}/gw",
        GATEWAY_UPSTREAM_POOL__READINESS_TIMEOUT_S="1",
    )
    client = await aiohttp_client(create_app(settings))
    response = await client.get("/readyz")
    assert response.status == 503
    body = await response.json()
    assert body["checks"]["storage"] == "unreachable"
    assert body["error"]["message"] == "not ready: storage unavailable"
    assert "pw" not in str(body)


async def test_readyz_without_upstreams_is_not_ready(aiohttp_client, make_settings):
    client = await aiohttp_client(create_app(make_settings()))
    response = await client.get("/readyz")
    assert response.status == 503
    assert "none configured" in (await response.json())["error"]["message"]
