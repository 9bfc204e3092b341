"""CORS: browsers on the configured origins may call the gateway; others may not."""

import pytest

from gateway.app import create_app
from gateway.config import load_settings
from gateway.errors import SettingsError

pytestmark = pytest.mark.integration

APP = "https://app.example.com"
PREFLIGHT = {
    "Access-Control-Request-Method": "POST",
    "Access-Control-Request-Headers": "content-type",
}
CALL = {"jsonrpc": "2.0", "id": 1, "method": "eth_chainId"}


@pytest.fixture(name="cors_gateway")
async def _cors_gateway(aiohttp_client, anvil, make_settings):
    settings = make_settings(
        upstreams=[anvil.url], GATEWAY_CORS_ORIGINS=f"{APP}, http://localhost:3000"
    )
    return await aiohttp_client(create_app(settings))


async def test_a_preflight_from_an_allowed_origin_is_answered(cors_gateway):
    response = await cors_gateway.options("/rpc", headers={"Origin": APP, **PREFLIGHT})
    assert response.status == 204
    assert response.headers["Access-Control-Allow-Origin"] == APP
    assert "POST" in response.headers["Access-Control-Allow-Methods"]
    assert "Authorization" in response.headers["Access-Control-Allow-Headers"]
    assert "Content-Type" in response.headers["Access-Control-Allow-Headers"]
    assert response.headers["Vary"] == "Origin"
    assert "Access-Control-Allow-Credentials" not in response.headers


async def test_calls_and_their_errors_carry_the_origin(cors_gateway):
    ok = await cors_gateway.post("/rpc", json=CALL, headers={"Origin": APP})
    assert (await ok.json())["result"] == "0x7a69"
    assert ok.headers["Access-Control-Allow-Origin"] == APP
    assert "X-Request-ID" in ok.headers["Access-Control-Expose-Headers"]
    bad = await cors_gateway.post(
        "/records", data=b"{nope", headers={"Origin": APP, "Content-Type": "application/json"}
    )
    assert bad.status == 400
    assert bad.headers["Access-Control-Allow-Origin"] == APP  # the page can read the error


async def test_other_origins_get_no_permission(cors_gateway):
    preflight = await cors_gateway.options(
        "/rpc", headers={"Origin": "https://evil.example", **PREFLIGHT}
    )
    assert preflight.status == 403
    assert (await preflight.json())["error"]["code"] == "cors.origin_not_allowed"
    assert "Access-Control-Allow-Origin" not in preflight.headers
    call = await cors_gateway.post("/rpc", json=CALL, headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in call.headers  # the browser withholds it


async def test_a_preflight_to_no_route_is_404(cors_gateway):
    response = await cors_gateway.options("/nowhere", headers={"Origin": APP, **PREFLIGHT})
    assert response.status == 404


async def test_without_origins_there_is_no_cors(gateway):
    preflight = await gateway.options("/rpc", headers={"Origin": APP, **PREFLIGHT})
    assert preflight.status == 405
    call = await gateway.post("/rpc", json=CALL, headers={"Origin": APP})
    assert "Access-Control-Allow-Origin" not in call.headers


async def test_any_origin(aiohttp_client, anvil, make_settings):
    settings = make_settings(upstreams=[anvil.url], GATEWAY_CORS_ORIGINS="*")
    client = await aiohttp_client(create_app(settings))
    call = await client.post("/rpc", json=CALL, headers={"Origin": "http://localhost:5173"})
    assert call.headers["Access-Control-Allow-Origin"] == "*"
    assert "Vary" not in call.headers


@pytest.mark.parametrize("origin", ["https://app.example.com/path", "app.example.com", "ftp://x"])
def test_an_origin_must_be_scheme_host_port(origin):
    with pytest.raises(SettingsError, match="cors_origins"):
        load_settings(None, {"GATEWAY_CORS_ORIGINS": origin})
