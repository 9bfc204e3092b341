"""Answers the lane gives, with everything the request middleware gives every other answer.

A feature registers an ``Answerer`` for a method and path (``register``); it is called
synchronously with the body and the client ip, and returns a ``LaneReply`` or None, in
which case aiohttp serves the request as usual and the lane leaves no trace of it. An
answered request gets what the middleware gives any request: its request id (the client's
when sane), the trace decision, a server span when sampled (the answerer's child spans
under it), the HTTP metrics, the access line and the hardening headers.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import formatdate
from http import HTTPStatus

from aiohttp import web
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import SpanKind

from gateway.caller import forwarded_ip
from gateway.telemetry import TELEMETRY, Telemetry
from gateway.telemetry.logging import write_access_line
from gateway.telemetry.middleware import end_server_span, request_id_from
from gateway.telemetry.sampling import new_span_id
from gateway.telemetry.state import CURRENT_REQUEST, RequestContext


@dataclass(frozen=True, slots=True)
class LaneReply:
    status: int
    body: bytes
    headers: tuple[tuple[str, str], ...] = ()


Answerer = Callable[[bytes, str], "LaneReply | None"]
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
        self._telemetry = telemetry
        self._date = _HttpDate()
        self.answered = 0  # requests the lane answered (tests and benches read it)

    @classmethod
    def of(cls, app: web.Application) -> Lane | None:
        """The lane of a started app; None when no feature registered a route."""
        routes = app.get(LANE_ROUTES)
        return cls(routes, app[TELEMETRY]) if routes else None

    def answer(  # noqa: PLR0913  # the parts of one framed request
        self,
        answerer: Answerer,
        *,
        method: bytes,
        path: bytes,
        body: bytes,
        peer_ip: str,
        request_id: bytes | None,
        forwarded_for: bytes | None,
    ) -> bytes | None:
        """The whole HTTP response, or None to let aiohttp serve the request."""
        telemetry = self._telemetry
        started = time.perf_counter()
        client_ip = peer_ip
        if forwarded_for and telemetry.trust_forwarded_for:  # as ``caller.client_ip``
            client_ip = forwarded_ip(forwarded_for.decode("ascii"))
        rid = request_id_from(None if request_id is None else request_id.decode("ascii"))
        trace_id, sampled = telemetry.decider.decide(None)
        span = otel_token = None
        route = path.decode("ascii")
        http_method = method.decode("ascii")
        if sampled:
            span = telemetry.server_tracer.start_span(
                f"{http_method} {route}",
                kind=SpanKind.SERVER,
                record_exception=False,
                set_status_on_exception=False,
            )
            context = span.get_span_context()
            trace_id, span_id = context.trace_id, context.span_id
            otel_token = otel_context.attach(trace.set_span_in_context(span))
        else:
            span_id = new_span_id()
        token = CURRENT_REQUEST.set(RequestContext(rid, trace_id, span_id, sampled))
        try:
            reply = answerer(body, client_ip)
        finally:
            CURRENT_REQUEST.reset(token)
            if otel_token is not None:
                otel_context.detach(otel_token)
        if reply is None:
            return None  # an unended span is never exported: this request left no trace
        self.answered += 1
        elapsed = time.perf_counter() - started
        exemplar = None
        if span is not None:
            end_server_span(
                span,
                method=http_method,
                route=route,
                path=route,
                status=reply.status,
                request_id=rid,
            )
            exemplar = {"trace_id": f"{trace_id:032x}"}
        telemetry.metrics.observe_http(http_method, route, reply.status, elapsed, exemplar)
        if telemetry.access_log:
            write_access_line(
                method=http_method,
                route=route,
                path=route,
                status=reply.status,
                duration_s=elapsed,
                body_bytes=len(reply.body),
                client_ip=client_ip,
                request_id=rid,
                trace_id=trace_id,
                span_id=span_id,
            )
        return self._render(reply, rid)

    def _render(self, reply: LaneReply, request_id: str) -> bytes:
        """The bytes aiohttp would send for the same ``web.Response`` (header names and
        values; the order is aiohttp's too)."""
        status = HTTPStatus(reply.status)
        extra = "".join(f"{name}: {value}\r\n" for name, value in reply.headers)
        head = (
            f"HTTP/1.1 {status.value} {status.phrase}\r\n{extra}"
            f"Content-Type: application/json\r\nX-Request-ID: {request_id}\r\n"
            "Server: gateway\r\nX-Content-Type-Options: nosniff\r\n"
            f"Content-Length: {len(reply.body)}\r\n"
        )
        return b"".join((head.encode(), b"Date: ", self._date.now(), b"\r\n\r\n", reply.body))
