"""A replica whose limits fail closed, with Redis down: 503 ratelimit.unavailable, not a
quota refusal (429 relay.quota_exceeded) nor a rate limit the caller never reached."""

from __future__ import annotations

import pytest
from eth_account import Account

from gateway.app import create_app
from tests.helpers.lane import LaneTestServer
from tests.helpers.redis import PrivateRedis
from tests.relay.conftest import Frontend

pytestmark = pytest.mark.integration


@pytest.fixture(name="redis")
def _redis(tmp_path):
    server = PrivateRedis(tmp_path)
    server.start()
    yield server
    server.kill()


async def test_fail_closed_limits_without_redis_are_unavailable(
    aiohttp_client, make_settings, relay_env, redis
):
    env = {
        **relay_env,
        "GATEWAY_REDIS_URL": f"{redis.url}/0",
        "GATEWAY_REDIS__RATE_LIMIT_FAIL_OPEN": "false",
    }
    client = await aiohttp_client(LaneTestServer(create_app(make_settings(**env))))
    frontend = Frontend(client)
    signer = Account.create()
    body = await frontend.build(signer, "while Redis is down")
    redis.kill()
    response = await client.post("/relay", json=body)
    assert response.status == 503, await response.text()
    assert (await response.json())["error"]["code"] == "ratelimit.unavailable"
    assert response.headers["Retry-After"] == "1"
    call = {"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []}
    response = await client.post("/rpc", json=call)
    assert response.status == 503, await response.text()
    assert (await response.json())["error"]["code"] == "ratelimit.unavailable"
    async with client.ws_connect("/rpc") as ws:
        await ws.send_json(call)
        reply = await ws.receive_json()
        assert reply["error"]["data"] == {"code": "ratelimit.unavailable"}
    text = await (await client.get("/metrics")).text()
    assert 'status="500"' not in text
