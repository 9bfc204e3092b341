"""The request middleware that ties logs, metrics and traces to one request id and trace id."""

from __future__ import annotations

import random
import re
import time
from collections.abc import Awaitable, Callable

import structlog
from aiohttp import web
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from gateway.telemetry.logging import write_access_line
from gateway.telemetry.metrics import HTTP_METHODS
from gateway.telemetry.state import REQUEST_ID, TELEMETRY, Telemetry

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

REQUEST_ID_HEADER = "X-Request-ID"
# Echo an incoming id only if it is short and plain: it lands in logs and headers.
_SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:\-]{0,127}")
_PROPAGATOR = TraceContextTextMapPropagator()
_UNMATCHED = "unmatched"


def request_id_for(request: web.Request) -> str:
    incoming = request.headers.get(REQUEST_ID_HEADER)
    if incoming is not None and _SANE_REQUEST_ID.fullmatch(incoming):
        return incoming
    # Unique, not secret: the Mersenne Twister is ~20x cheaper than a getrandom() call.
    return f"{random.getrandbits(128):032x}"


def route_template(request: web.Request) -> str:
    """The bounded route label: the route's template, never the raw path."""
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else _UNMATCHED


def client_ip(request: web.Request, *, trust_forwarded_for: bool) -> str:
    if trust_forwarded_for:
        forwarded = request.headers.get("X-Forwarded-For")
        if forwarded:
            return forwarded.split(",", 1)[0].strip()
    return request.remote or ""


@web.middleware
async def observe_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Request id, server span, metrics and one access-log line for every request.

    Sits outermost, so it sees the status the error middleware rendered.
    """
    telemetry = request.app[TELEMETRY]
    metrics = telemetry.metrics
    request_id = request_id_for(request)
    request[REQUEST_ID] = request_id
    method = request.method if request.method in HTTP_METHODS else "other"
    route = route_template(request)
    parent = _PROPAGATOR.extract(request.headers) if "traceparent" in request.headers else None

    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(request_id=request_id)
    started = time.perf_counter()
    metrics.http_in_flight.inc()
    span = telemetry.tracer.start_span(
        f"{method} {route}",
        context=parent,
        kind=SpanKind.SERVER,
        record_exception=False,
        set_status_on_exception=False,
    )
    token = otel_context.attach(trace.set_span_in_context(span))
    response: web.StreamResponse | None = None
    status = 500  # what the client sees if the handler is cancelled or escapes the middleware
    try:
        response = await handler(request)
        status = response.status
        if not response.prepared:  # streamed responses set it themselves (set_request_id)
            _set_headers(response, request_id)
    except web.HTTPException as exc:  # raised past the error middleware (should not happen)
        status = exc.status
        raise
    finally:
        elapsed = time.perf_counter() - started
        metrics.http_in_flight.dec()
        otel_context.detach(token)
        _finish(
            request,
            span=span,
            telemetry=telemetry,
            method=method,
            route=route,
            status=status,
            elapsed=elapsed,
            response=response,
        )
    return response


def _finish(  # noqa: PLR0913  # the facts of one finished request
    request: web.Request,
    *,
    span: trace.Span,
    telemetry: Telemetry,
    method: str,
    route: str,
    status: int,
    elapsed: float,
    response: web.StreamResponse | None,
) -> None:
    """End the span, count the request, write its access-log line."""
    context = span.get_span_context()
    trace_id = format(context.trace_id, "032x")
    exemplar = None
    if span.is_recording():
        span.set_attributes(
            {
                "http.request.method": method,
                "http.route": route,
                "url.path": request.path,
                "http.response.status_code": status,
                "gateway.request_id": request[REQUEST_ID],
            }
        )
        if status >= 500:
            span.set_status(Status(StatusCode.ERROR))
        if context.trace_flags.sampled:
            exemplar = {"trace_id": trace_id}
    span.end()
    telemetry.metrics.observe_http(method, route, status, elapsed, exemplar)
    if telemetry.access_log:
        write_access_line(
            {
                "method": request.method,
                "route": route,
                "path": request.path,
                "status": status,
                "duration_ms": round(elapsed * 1000, 3),
                "bytes": _body_bytes(response),
                "client_ip": client_ip(request, trust_forwarded_for=telemetry.trust_forwarded_for),
                "request_id": request[REQUEST_ID],
                "trace_id": trace_id,
                "span_id": format(context.span_id, "016x"),
            }
        )


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
