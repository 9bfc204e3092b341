"""Answers the lane gives, with everything the request middleware gives every other answer.

A feature registers an ``Answerer`` for a method and path (``register``). It is called
synchronously with a ``LaneRequest`` and returns a ``LaneReply``, an awaitable of one (the
connection then waits for it, as aiohttp's would for a handler), or None: aiohttp serves
the request as usual and the lane leaves no trace of it. An answered request gets what the
middleware gives any request: its request id (the client's when sane), the trace decision,
a server span when sampled (the answerer's child spans under it), the HTTP metrics, the
access line, the hardening headers, and errors rendered as the API's JSON body.
"""

from __future__ import annotations

import asyncio
import functools
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from email.utils import formatdate
from http import HTTPStatus

import structlog
from aiohttp import web
from opentelemetry import trace
from opentelemetry.trace import Status, StatusCode

from gateway.caller import forwarded_ip
from gateway.errors import GatewayError
from gateway.telemetry import TELEMETRY, Telemetry
from gateway.telemetry.logging import write_access_line
from gateway.telemetry.middleware import end_server_span, enter_request, request_id_from

log = structlog.get_logger("gateway.lane")

JSON = "application/json"
_ERROR_JSON = "application/json; charset=utf-8"  # what aiohttp's json_response says


@dataclass(slots=True)  # not frozen: a frozen dataclass's __init__ costs ~3x
class LaneRequest:
    body: bytes
    client_ip: str
    content_type: bytes | None  # the header's value, as sent


@dataclass(slots=True)
class LaneReply:
    status: int
    body: bytes
    headers: tuple[tuple[str, str], ...] = ()
    content_type: str = JSON


def error_reply(error: GatewayError) -> LaneReply:
    """A refusal as ``error_responses.error_response`` renders it, byte for byte."""
    if error.http_status >= 500:
        log.warning("request failed", code=error.code, detail=error.detail or error.message)
    return LaneReply(
        error.http_status,
        json.dumps(error.to_body()).encode(),
        tuple(error.headers().items()),
        _ERROR_JSON,
    )


Answer = LaneReply | Awaitable[LaneReply] | None
Answerer = Callable[[LaneRequest], Answer]
LANE_ROUTES = web.AppKey("lane_routes", dict[tuple[bytes, bytes], Answerer])


def register(app: web.Application, method: str, path: str, answerer: Answerer) -> None:
    """Let the lane answer ``method path`` with ``answerer`` (from a feature's cleanup_ctx)."""
    app.setdefault(LANE_ROUTES, {})[(method.encode(), path.encode())] = answerer


class _HttpDate:
    """The Date header, formatted once a second (as aiohttp does)."""

    def __init__(self) -> None:
        self._second = -1
        self._value = b""

    def now(self) -> bytes:
        second = int(time.time())
        if second != self._second:
            self._second = second
            self._value = formatdate(second, usegmt=True).encode()
        return self._value


class Lane:
    """The routes a running app's lane answers, and the telemetry of each answer."""

    def __init__(self, routes: dict[tuple[bytes, bytes], Answerer], telemetry: Telemetry) -> None:
        self.routes = routes
        # How a request for one of the routes starts: "POST /rpc ".
        self.prefixes = tuple(method + b" " + path + b" " for method, path in routes)
        # Each route's method, path and server span name, as str.
        self._names = {
            key: (key[0].decode(), key[1].decode(), f"{key[0].decode()} {key[1].decode()}")
            for key in routes
        }
        self._telemetry = telemetry
        self._date = _HttpDate()
        self.answered = 0  # requests the lane answered (tests and benches read it)

    @classmethod
    def of(cls, app: web.Application) -> Lane | None:
        """The lane of a started app; None when no feature registered a route."""
        routes = app.get(LANE_ROUTES)
        return cls(routes, app[TELEMETRY]) if routes else None

    def answer(
        self,
        route: tuple[bytes, bytes],
        *,
        request: LaneRequest,
        request_id: bytes | None,
        forwarded_for: bytes | None,
    ) -> bytes | asyncio.Task[bytes] | None:
        """The whole HTTP response, a task that makes it, or None to let aiohttp serve the
        request."""
        started = time.perf_counter()
        telemetry = self._telemetry
        if forwarded_for and telemetry.trust_forwarded_for:  # as ``caller.client_ip``
            request.client_ip = forwarded_ip(forwarded_for.decode("ascii"))
        answerer = self.routes[route]
        scope = _Scope(
            *self._names[route],
            request_id_from(None if request_id is None else request_id.decode("ascii")),
            request.client_ip,
            started,
        )
        traced = enter_request(telemetry, scope.name, scope.request_id)
        scope.trace_id, scope.span_id, scope.span = traced.trace_id, traced.span_id, traced.span
        try:
            answer = answerer(request)
            if answer is None or isinstance(answer, LaneReply):
                return None if answer is None else self._finish(scope, answer)
            # Made while the request's context is set: the task runs in a copy of it.
            return asyncio.ensure_future(self._finish_later(scope, answer))
        finally:
            traced.leave()

    async def _finish_later(self, scope: _Scope, answer: Awaitable[LaneReply]) -> bytes:
        metrics = self._telemetry.metrics
        metrics.in_flight += 1  # as the middleware counts a request it waits for
        try:
            reply = await answer
        except GatewayError as error:
            reply = error_reply(error)
        except Exception as exc:  # as render_exception: logged, never shown
            log.exception("unhandled error", exc_info=exc)
            if scope.span is not None:
                scope.span.record_exception(exc)
                scope.span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
            body = GatewayError().to_body()
            body["error"]["requestId"] = scope.request_id
            reply = LaneReply(500, json.dumps(body).encode(), content_type=_ERROR_JSON)
        finally:
            metrics.in_flight -= 1
        return self._finish(scope, reply)

    def _finish(self, scope: _Scope, reply: LaneReply) -> bytes:
        """The response's bytes, after its span, metrics and access line."""
        self.answered += 1
        telemetry = self._telemetry
        elapsed = time.perf_counter() - scope.started
        exemplar = None
        if scope.span is not None:
            end_server_span(
                scope.span,
                method=scope.method,
                route=scope.route,
                path=scope.route,
                status=reply.status,
                request_id=scope.request_id,
            )
            exemplar = {"trace_id": f"{scope.trace_id:032x}"}
        telemetry.metrics.observe_http(scope.method, scope.route, reply.status, elapsed, exemplar)
        if telemetry.access_log:
            write_access_line(
                method=scope.method,
                route=scope.route,
                path=scope.route,
                status=reply.status,
                duration_s=elapsed,
                body_bytes=len(reply.body),
                client_ip=scope.client_ip,
                request_id=scope.request_id,
                trace_id=scope.trace_id,
                span_id=scope.span_id,
            )
        return self._render(reply, scope.request_id)

    def _render(self, reply: LaneReply, request_id: str) -> bytes:
        """The bytes aiohttp would send for the same ``web.Response`` (header names and
        values; the order is aiohttp's too)."""
        body = reply.body
        parts = [_status_line(reply.status)]
        if reply.headers:
            parts.append("".join(f"{name}: {value}\r\n" for name, value in reply.headers).encode())
        parts += (
            _content_type_line(reply.content_type),
            request_id.encode(),
            _SERVER_HEADERS,
            str(len(body)).encode(),
            b"\r\nDate: ",
            self._date.now(),
            b"\r\n\r\n",
            body,
        )
        return b"".join(parts)


_SERVER_HEADERS = b"\r\nServer: gateway\r\nX-Content-Type-Options: nosniff\r\nContent-Length: "


@functools.cache
def _status_line(status: int) -> bytes:
    return f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\n".encode()


@functools.cache
def _content_type_line(content_type: str) -> bytes:
    return f"Content-Type: {content_type}\r\nX-Request-ID: ".encode()


@dataclass(slots=True)
class _Scope:
    """One answered request's telemetry, from its start to its response."""

    method: str
    route: str
    name: str  # the server span's
    request_id: str
    client_ip: str
    started: float
    trace_id: int = 0
    span_id: int = 0
    span: trace.Span | None = None
