"""Hostile and careless clients: nothing they send reaches a log, a hang-up is a 499 (never a
500 or an error line), on aiohttp's path and on the fast path alike."""

import asyncio
import io

import pytest
import structlog
from aiohttp import web

from gateway.app import create_app
from gateway.config import LogSettings
from gateway.telemetry import configure_logging
from tests.helpers.lane import Connection, LaneTestServer, started_servers
from tests.lane.test_protocol import metrics_text

pytestmark = pytest.mark.integration

COOKIE = "other_app_session=c00kie-s3cret-value"
BEARER = "Bearer eyJhbGciOiJFUzI1NiJ9.auth-s3cret-value.sig"
OPERATOR = "op-s3cret-value"
PASSWORD = "my-passw0rd-s3cret"
SECRETS = ("c00kie-s3cret", "auth-s3cret", "op-s3cret", "passw0rd-s3cret")
PATHS = ["/rpc", "/records", "/auth/verify", "/relay"]


def _request(path: str, *, authorization: bool, length: int | None = None) -> tuple[bytes, bytes]:
    body = (
        b'{"jsonrpc":"2.0","id":1,"method":"eth_chainId","params":[],'
        b'"message":"sign in","password":"' + PASSWORD.encode() + b'"}'
    )
    lines = [
        f"POST {path} HTTP/1.1",
        "Host: gateway",
        "Content-Type: application/json",
        f"Cookie: {COOKIE}",
        f"X-Operator-Token: {OPERATOR}",
    ]
    if authorization:
        lines.append(f"Authorization: {BEARER}")
    lines.append(f"Content-Length: {length or len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode(), body


class ServedLikeProduction(LaneTestServer):
    """``gateway serve``'s runner: handlers are not cancelled when their client leaves
    (aiohttp's test server cancels them), so a body read fails in the handler instead."""

    async def _make_runner(self, **kwargs):
        return await super()._make_runner(**{**kwargs, "handler_cancellation": False})


@pytest.fixture(name="start")
async def _start(anvil, make_settings):
    async with started_servers() as start_server:

        async def start(*, lane: bool, cancel_handlers: bool = False) -> LaneTestServer:
            settings = make_settings(
                upstreams=[anvil.url],
                GATEWAY_CHAIN_ID="31337",
                GATEWAY_SERVER__LANE=str(lane).lower(),
            )
            kind = LaneTestServer if cancel_handlers else ServedLikeProduction
            return await start_server(create_app(settings), kind=kind)

        yield start


@pytest.fixture(name="console")
def _console():
    """Log lines rendered for a terminal (the development format) into a buffer."""
    buffer = io.BytesIO()
    sink = configure_logging(
        LogSettings(level="debug", format="console"), stream=buffer, cache=False
    )
    yield lambda: (sink.flush(), buffer.getvalue().decode())[1]
    structlog.reset_defaults()


async def _hostile_round(server: LaneTestServer) -> None:
    for path in PATHS:
        for authorization in (True, False):
            head, body = _request(path, authorization=authorization, length=400)
            cut = await Connection.open(server)  # the head, half the body, then gone
            await cut.send(head + body[: len(body) // 2])
            await asyncio.sleep(0.05)
            cut.close()
            head, body = _request(path, authorization=authorization)
            whole = await Connection.open(server)
            await whole.send(head + body)
            reply = await whole.reply()
            assert reply.status < 500 or reply.status == 503, (path, reply.status, reply.body)
            assert (
                reply.header(
                    "Content-Type",
                )
                is not None
            )
            whole.close()
    await asyncio.sleep(0.3)  # the cut requests' handlers have seen the hang-up


@pytest.mark.parametrize("cancel_handlers", [False, True], ids=["as-served", "cancelled"])
@pytest.mark.parametrize("lane", [True, False], ids=["fast-path", "aiohttp"])
async def test_secrets_a_client_sends_never_reach_a_log_line(start, logs, lane, cancel_handlers):
    server = await start(lane=lane, cancel_handlers=cancel_handlers)
    await _hostile_round(server)
    text = logs.buffer.getvalue().decode()
    lines = logs.lines()
    assert lines
    for secret in SECRETS:
        assert secret not in text, secret
    assert [line for line in lines if line.get("level") in {"error", "critical"}] == []
    samples = [
        l
        for l in (await metrics_text(server)).splitlines()
        if l.startswith("gateway_http_requests_total")
    ]
    assert not [l for l in samples if 'status="500"' in l], samples
    hang_ups = [l for l in samples if 'status="499"' in l]
    assert hang_ups, samples  # the bodies that were being read when their client left
    access = [line for line in lines if line.get("event") == "request" and line["status"] == 499]
    assert access
    assert all(line["level"] == "info" for line in access)


async def test_secrets_never_reach_a_console_line(start, console):
    server = await start(lane=True)
    await _hostile_round(server)
    text = console()
    assert "request" in text
    for secret in SECRETS:
        assert secret not in text, secret
    assert "[error" not in text


@pytest.mark.parametrize("log_format", ["json", "console"])
async def test_a_traceback_carries_no_local_variable(
    aiohttp_client, make_settings, logs, log_format
):
    buffer = io.BytesIO()
    sink = configure_logging(
        LogSettings(level="info", format=log_format), stream=buffer, cache=False
    )

    async def boom(request: web.Request) -> web.Response:
        api_secret = "local-s3cret-value"  # noqa: F841  # what a traceback must not show
        headers = dict(request.headers)  # noqa: F841
        raise RuntimeError("deliberate")

    app = create_app(make_settings(upstreams=[]))
    app.router.add_get("/boom", boom)
    client = await aiohttp_client(app)
    response = await client.get("/boom", headers={"Cookie": "sid=cookie-s3cret-value"})
    assert response.status == 500
    assert (await response.json())["error"]["code"] == "internal"
    sink.flush()
    text = buffer.getvalue().decode()
    assert "deliberate" in text  # the traceback is there
    assert "boom" in text  # with its frames
    assert "local-s3cret" not in text
    assert "cookie-s3cret" not in text
