"""The request middleware: request id, trace decision, server span, metrics, access line and
error rendering, once per request, in one layer.

Per-request budget (``bench/overhead.py`` prints it): the trace is decided before the SDK
is touched, so an unsampled request makes no span object and attaches no OpenTelemetry
context; its ids live in one ``RequestContext`` set in one context variable, which log
lines and node calls read. Metrics are lock-free children; the access line is one orjson
call. Each of these was measured against the form it replaced (see the README's table).
"""

from __future__ import annotations

import asyncio
import random
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from contextvars import Token
from dataclasses import dataclass

from aiohttp import web
from aiohttp.typedefs import Middleware
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from gateway.caller import client_ip
from gateway.telemetry.logging import write_access_line
from gateway.telemetry.metrics import HTTP_METHODS
from gateway.telemetry.sampling import Parent, new_span_id, parse_traceparent
from gateway.telemetry.state import (
    CURRENT_REQUEST,
    REQUEST_ID,
    TELEMETRY,
    RequestContext,
    Telemetry,
)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
RenderError = Callable[[web.Request, Exception], web.StreamResponse]

REQUEST_ID_HEADER = "X-Request-ID"
# Echo an incoming id only if it is short and plain: it lands in logs and headers.
_SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:\-]{0,127}")
_PROPAGATOR = TraceContextTextMapPropagator()
_UNMATCHED = "unmatched"
# A client that hung up before its answer (nginx's code): its own doing, counted and logged
# as one access line, never as a server error.
CLIENT_CLOSED = 499
# What reading a request raises once its client is gone (aiohttp fails the body's stream
# with a ConnectionResetError; a body cut short is an IncompleteReadError).
_HANG_UP = (ConnectionError, asyncio.IncompleteReadError)


def client_gone(request: web.Request) -> bool:
    """Whether the request's connection is closed or closing."""
    transport = request.transport
    return transport is None or transport.is_closing()


def request_id_for(request: web.Request) -> str:
    return request_id_from(request.headers.get(REQUEST_ID_HEADER))


def request_id_from(incoming: str | None) -> str:
    """The client's X-Request-ID when it is sane, else a new one."""
    if incoming is not None and _SANE_REQUEST_ID.fullmatch(incoming):
        return incoming
    # Unique, not secret: the Mersenne Twister is ~20x cheaper than a getrandom() call.
    return f"{random.getrandbits(128):032x}"


def route_template(request: web.Request) -> str:
    """The bounded route label: the route's template, never the raw path."""
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else _UNMATCHED


def request_middleware(render_error: RenderError) -> Middleware:
    """The outermost middleware; ``render_error`` turns a handler's exception into the
    response the client gets (the app's error rendering; telemetry does not know it)."""

    @web.middleware
    async def observe(request: web.Request, handler: Handler) -> web.StreamResponse:
        telemetry = request.app[TELEMETRY]
        metrics = telemetry.metrics
        headers = request.headers
        request_id = request_id_for(request)
        request[REQUEST_ID] = request_id
        method = request.method if request.method in HTTP_METHODS else "other"
        route = route_template(request)
        header = headers.get("traceparent")
        parent = parse_traceparent(header) if header is not None else None
        traced = enter_request(telemetry, f"{method} {route}", request_id, parent, headers)
        span, trace_id, span_id = traced.span, traced.trace_id, traced.span_id
        metrics.in_flight += 1
        started = time.perf_counter()
        response: web.StreamResponse | None = None
        status = 500  # what the client sees if the handler is cancelled
        try:
            try:
                response = await handler(request)
            except asyncio.CancelledError:
                if client_gone(request):
                    status = CLIENT_CLOSED
                raise
            except Exception as exc:  # noqa: BLE001  # rendered: the client gets JSON, never a trace
                if client_gone(request) and isinstance(exc, _HANG_UP):
                    response = web.Response(status=CLIENT_CLOSED, reason="Client Closed Request")
                else:
                    response = render_error(request, exc)
            status = response.status
            if not response.prepared:  # streamed responses set it themselves (set_request_id)
                _set_headers(response, request_id)
        except web.HTTPException as exc:  # a redirect re-raised by render_error
            status = exc.status
            raise
        finally:
            elapsed = time.perf_counter() - started
            metrics.in_flight -= 1
            exemplar = None
            if span is not None:
                end_server_span(
                    span,
                    method=method,
                    route=route,
                    path=request.path,
                    status=status,
                    request_id=request_id,
                )
                exemplar = {"trace_id": f"{trace_id:032x}"}
            metrics.observe_http(method, route, status, elapsed, exemplar)
            if telemetry.access_log:
                write_access_line(
                    method=request.method,
                    route=route,
                    path=request.path,
                    status=status,
                    duration_s=elapsed,
                    body_bytes=_body_bytes(response),
                    client_ip=client_ip(request, trust_forwarded_for=telemetry.trust_forwarded_for),
                    request_id=request_id,
                    trace_id=trace_id,
                    span_id=span_id,
                )
            traced.leave()
        return response

    return observe


@dataclass(slots=True)  # not frozen: a frozen dataclass's __init__ costs ~3x
class RequestTrace:
    """A request's trace ids, its server span when sampled, and the contexts it entered."""

    trace_id: int
    span_id: int
    span: trace.Span | None
    _otel_token: object
    _request_token: Token[RequestContext | None]

    def leave(self) -> None:
        CURRENT_REQUEST.reset(self._request_token)
        if self._otel_token is not None:
            otel_context.detach(self._otel_token)  # type: ignore[arg-type]  # attach's token


def enter_request(
    telemetry: Telemetry,
    name: str,
    request_id: str,
    parent: Parent | None = None,
    carrier: Mapping[str, str] | None = None,
) -> RequestTrace:
    """The request's trace decision (``parent``: its valid ``traceparent``, read from
    ``carrier``), its server span when sampled, made current, and its RequestContext set
    (``RequestTrace.leave`` undoes both)."""
    trace_id, sampled = telemetry.decider.decide(parent)
    span: trace.Span | None = None
    otel_token = None
    if sampled:
        span = telemetry.server_tracer.start_span(
            name,
            context=_PROPAGATOR.extract(carrier) if parent is not None else None,
            kind=SpanKind.SERVER,
            record_exception=False,
            set_status_on_exception=False,
        )
        span_context = span.get_span_context()
        trace_id, span_id = span_context.trace_id, span_context.span_id
        otel_token = otel_context.attach(trace.set_span_in_context(span))
    else:
        span_id = new_span_id()
    token = CURRENT_REQUEST.set(RequestContext(request_id, trace_id, span_id, sampled))
    return RequestTrace(trace_id, span_id, span, otel_token, token)


def end_server_span(  # noqa: PLR0913  # the span's attributes
    span: trace.Span, *, method: str, route: str, path: str, status: int, request_id: str
) -> None:
    span.set_attributes(
        {
            "http.request.method": method,
            "http.route": route,
            "url.path": path,
            "http.response.status_code": status,
            "gateway.request_id": request_id,
        }
    )
    if status >= 500:
        span.set_status(Status(StatusCode.ERROR))
    span.end()


def _body_bytes(response: web.StreamResponse | None) -> int:
    if response is None:
        return 0
    if response.prepared:  # streamed by the handler itself (WebSocket, large bodies)
        return response.body_length
    return response.content_length or 0


def set_request_id(request: web.Request, response: web.StreamResponse) -> None:
    """For handlers that prepare their own response (WebSocket, streaming): the middleware
    sets the headers on every other response, cheaper than an on_response_prepare signal."""
    request_id = request.get(REQUEST_ID)
    if request_id is not None:
        _set_headers(response, request_id)


def _set_headers(response: web.StreamResponse, request_id: str) -> None:
    """The request id, and two hardening defaults: no server/version banner (aiohttp's says
    "Python/3.x aiohttp/3.y"), and browsers must not sniff a JSON body into something else."""
    headers = response.headers
    headers[REQUEST_ID_HEADER] = request_id
    headers["Server"] = "gateway"
    headers["X-Content-Type-Options"] = "nosniff"
