"""Errors are JSON with stable codes; never a stack trace, never a 500 for a client mistake."""

import gzip

import pytest
from aiohttp import web

from gateway.app import create_app
from gateway.errors import RateLimited
from tests.helpers.waiting import eventually

pytestmark = pytest.mark.integration


@pytest.fixture(name="app_with_probe_routes")
async def _app_with_probe_routes(aiohttp_client, anvil, make_settings):
    settings = make_settings(upstreams=[anvil.url], GATEWAY_SERVER__MAX_BODY_BYTES="2048")
    app = create_app(settings)

    async def echo(request: web.Request) -> web.Response:
        return web.json_response({"size": len(await request.read())})

    async def boom(_request: web.Request) -> web.Response:
        raise RuntimeError("database password is hunter2")

    async def limited(_request: web.Request) -> web.Response:
        raise RateLimited(retry_after_s=2.2)

    app.router.add_post("/probe/echo", echo)
    app.router.add_get("/probe/boom", boom)
    app.router.add_get("/probe/limited", limited)
    return await aiohttp_client(app)


async def test_unknown_route_is_404_json(gateway):
    response = await gateway.get("/nope")
    assert response.status == 404
    assert await response.json() == {"error": {"code": "not_found", "message": "no such route"}}


async def test_wrong_method_is_405_json_with_allow(gateway):
    response = await gateway.delete("/healthz")
    assert response.status == 405
    assert (await response.json())["error"]["code"] == "method_not_allowed"
    assert "GET" in response.headers["Allow"]


async def test_oversized_body_is_413(app_with_probe_routes):
    ok = await app_with_probe_routes.post("/probe/echo", data=b"x" * 1000)
    assert ok.status == 200
    response = await app_with_probe_routes.post("/probe/echo", data=b"x" * 5000)
    assert response.status == 413
    body = await response.json()
    assert body["error"]["code"] == "request.too_large"
    assert "2048" in body["error"]["message"]


async def test_a_compressed_body_that_does_not_decompress_is_400(gateway, logs):
    for path in ["/rpc", "/records", "/auth/verify"]:
        response = await gateway.post(
            path,
            data=b"this is not deflate",
            headers={
                "Content-Type": "application/json",
                "Content-Encoding": "deflate",
                "Connection": "close",  # aiohttp closes a connection with an unread body
            },
        )
        assert response.status == 400, path
        assert (await response.json())["error"]["code"] == "request.bad_encoding", path
    await eventually(  # every request's access line is written: nothing is pending
        lambda: len([line for line in logs.lines() if line.get("event") == "request"]) >= 2,
        what="the access lines",
    )
    assert not [line for line in logs.lines() if line["level"] == "error"]


async def test_a_compression_bomb_stops_at_the_body_limit(app_with_probe_routes):
    bomb = gzip.compress(b"0" * (50 * 1024 * 1024))  # 50 MiB of zeros in ~50 KiB
    response = await app_with_probe_routes.post(
        "/probe/echo", data=bomb, headers={"Content-Encoding": "gzip"}
    )
    assert response.status == 413
    assert (await response.json())["error"]["code"] == "request.too_large"


async def test_unexpected_exception_is_500_without_stack_or_secret(app_with_probe_routes, logs):
    response = await app_with_probe_routes.get("/probe/boom")
    assert response.status == 500
    body = await response.json()
    text = str(body)
    assert body["error"]["code"] == "internal"
    assert body["error"]["requestId"] == response.headers["X-Request-ID"]
    for leak in ("hunter2", "Traceback", "RuntimeError"):
        assert leak not in text
    (logged,) = logs.events("unhandled error")
    assert logged["request_id"] == response.headers["X-Request-ID"]
    assert logged["exception"][0]["exc_type"] == "RuntimeError"
    assert logs.events("request")[0]["status"] == 500


async def test_rate_limited_error_carries_retry_after(app_with_probe_routes):
    response = await app_with_probe_routes.get("/probe/limited")
    assert response.status == 429
    assert response.headers["Retry-After"] == "3"
    assert (await response.json())["error"]["code"] == "rate_limited"
