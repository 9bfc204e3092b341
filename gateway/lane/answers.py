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
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from email.utils import formatdate
from http import HTTPStatus

import structlog
from aiohttp import web

from gateway.caller import forwarded_ip
from gateway.error_responses import ERROR_CONTENT_TYPE, error_body, unhandled_body
from gateway.errors import GatewayError
from gateway.lane.framing import Frame
from gateway.telemetry import TELEMETRY, Telemetry
from gateway.telemetry.logging import Facts
from gateway.telemetry.scope import CLIENT_CLOSED, RequestScope, open_scope, request_id_from

log = structlog.get_logger("gateway.lane")

JSON = "application/json"


@dataclass(slots=True)  # not frozen: a frozen dataclass's __init__ costs ~3x
class LaneRequest:
    body: bytes
    client_ip: str
    content_type: bytes | None  # the header's value, as sent
    authorization: bytes | None = None  # the header's value, as sent


@dataclass(slots=True)
class LaneReply:
    status: int
    body: bytes
    headers: tuple[tuple[str, str], ...] = ()
    content_type: str = JSON
    head: bytes = b""  # more header lines, rendered (after ``headers``)
    facts: Facts | None = None  # how the answer was made (the access line, the span)


def error_reply(error: GatewayError) -> LaneReply:
    """A refusal as ``error_responses.error_response`` renders it, byte for byte."""
    return LaneReply(
        error.http_status, error_body(error), tuple(error.headers().items()), ERROR_CONTENT_TYPE
    )


Answer = LaneReply | Awaitable[LaneReply] | None
Answerer = Callable[[LaneRequest], Answer]
LANE_ROUTES = web.AppKey("lane_routes", dict[tuple[bytes, bytes], Answerer])
# A route's template where it is not its path ("/rpc/{network}" for "/rpc/1").
LANE_TEMPLATES = web.AppKey("lane_templates", dict[tuple[bytes, bytes], str])


def register(
    app: web.Application, method: str, path: str, answerer: Answerer, *, route: str | None = None
) -> None:
    """Let the lane answer ``method path`` with ``answerer`` (from a feature's cleanup_ctx);
    ``route`` is the template aiohttp's router names it by (metrics, spans), if not ``path``."""
    key = (method.encode(), path.encode())
    app.setdefault(LANE_ROUTES, {})[key] = answerer
    if route is not None:
        app.setdefault(LANE_TEMPLATES, {})[key] = route


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

    def __init__(
        self,
        routes: dict[tuple[bytes, bytes], Answerer],
        telemetry: Telemetry,
        templates: dict[tuple[bytes, bytes], str] | None = None,
    ) -> None:
        self.routes = routes
        # How a request for one of the routes starts: "POST /rpc ".
        self.prefixes = tuple(method + b" " + path + b" " for method, path in routes)
        # Each route's method, template and path, as str.
        templates = templates or {}
        self._names = {
            key: (key[0].decode(), templates.get(key, key[1].decode()), key[1].decode())
            for key in routes
        }
        self._telemetry = telemetry
        self._date = _HttpDate()
        self.answered = 0  # requests the lane answered (tests and benches read it)

    @classmethod
    def of(cls, app: web.Application) -> Lane | None:
        """The lane of a started app; None when no feature registered a route."""
        routes = app.get(LANE_ROUTES)
        return cls(routes, app[TELEMETRY], app.get(LANE_TEMPLATES)) if routes else None

    def answer(  # positional: the lane's every request calls it (~20 ns a keyword)
        self,
        route: tuple[bytes, bytes],
        request: LaneRequest,
        request_id: bytes | None,
        forwarded_for: bytes | None,
    ) -> bytes | asyncio.Task[bytes] | None:
        """The whole HTTP response, a task that makes it, or None to let aiohttp serve the
        request."""
        telemetry = self._telemetry
        if forwarded_for and telemetry.trust_forwarded_for:  # as ``caller.client_ip``
            request.client_ip = forwarded_ip(forwarded_for.decode("ascii"))
        answerer = self.routes[route]
        method, template, path = self._names[route]
        scope = open_scope(
            telemetry,
            method,
            method,
            template,
            path,
            request_id_from(None if request_id is None else request_id.decode("ascii")),
        )
        finished = False
        try:
            answer = answerer(request)
            if answer is None:
                return None
            if isinstance(answer, LaneReply):
                finished = True
                return self._finish(scope, answer, request.client_ip)
            # Made while the request's context is set: the task runs in a copy of it.
            finished = True
            return asyncio.ensure_future(self._finish_later(scope, answer, request.client_ip))
        finally:
            scope.leave()
            if not finished:  # aiohttp serves it (or the answerer raised): no trace of it here
                telemetry.metrics.in_flight -= 1
                if scope.span is not None:
                    scope.span.end()  # not exported as an answer: a sampled span is ended

    def hung_up(self, frame: Frame, client_ip: str) -> None:
        """A client left with a lane request's head sent and its body not: a 499, counted
        and logged as aiohttp's path does."""
        method, template, path = self._names[frame.route]
        scope = open_scope(
            self._telemetry,
            method=method,
            method_label=method,
            route=template,
            path=path,
            request_id=request_id_from(
                None if frame.request_id is None else frame.request_id.decode("ascii")
            ),
        )
        scope.leave()
        scope.finish(CLIENT_CLOSED, 0, client_ip)

    async def _finish_later(
        self, scope: RequestScope, answer: Awaitable[LaneReply], client_ip: str
    ) -> bytes:
        try:
            reply = await answer
        except GatewayError as error:
            reply = error_reply(error)
        except Exception as exc:  # noqa: BLE001  # as render_exception: logged, never shown
            scope.fail(exc)
            reply = LaneReply(
                500, unhandled_body(exc, scope.request_id), content_type=ERROR_CONTENT_TYPE
            )
        return self._finish(scope, reply, client_ip)

    def _finish(self, scope: RequestScope, reply: LaneReply, client_ip: str) -> bytes:
        """The response's bytes, after its span, metrics and access line."""
        self.answered += 1
        scope.finish(reply.status, len(reply.body), client_ip, reply.facts)
        return self._render(reply, scope.request_id)

    def _render(self, reply: LaneReply, request_id: str) -> bytes:
        """The bytes aiohttp would send for the same ``web.Response`` (header names and
        values; the order is aiohttp's too)."""
        body = reply.body
        parts = [_status_line(reply.status)]
        if reply.headers:
            parts.append(header_lines(reply.headers))
        parts += (
            reply.head,
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


def header_lines(headers: tuple[tuple[str, str], ...]) -> bytes:
    """``headers`` as the lines of a response head."""
    return "".join([f"{name}: {value}\r\n" for name, value in headers]).encode()


@functools.cache
def _status_line(status: int) -> bytes:
    return f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\n".encode()


@functools.cache
def _content_type_line(content_type: str) -> bytes:
    return f"Content-Type: {content_type}\r\nX-Request-ID: ".encode()
