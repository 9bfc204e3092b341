"""The request scope: what every request gets, whichever transport received it.

A transport (aiohttp's middleware, the lane's connection protocol) opens a scope when a
request starts and finishes it with the status it answered. The scope owns the request
id, the trace decision and server span, the request's context (log lines, the node's
``traceparent``), ``gateway_http_requests_in_flight``, the HTTP metrics and the access
line; nothing else writes them.

Per-request budget (``bench/overhead.py`` prints it): the trace is decided before the SDK
is touched, so an unsampled request makes no span object and attaches no OpenTelemetry
context; its ids live in one ``RequestContext`` in one context variable. Metrics are
lock-free children; the access line is one orjson call.
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Mapping
from contextvars import Token
from dataclasses import dataclass

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from gateway.telemetry.logging import Facts, write_access_line
from gateway.telemetry.sampling import Parent, new_span_id, parse_traceparent
from gateway.telemetry.state import CURRENT_REQUEST, RequestContext, Telemetry

# A client that hung up before its answer (nginx's code): its own doing, counted and logged
# as one access line, never as a server error.
CLIENT_CLOSED = 499
# Echo an incoming id only if it is short and plain: it lands in logs and headers.
_SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:\-]{0,127}")
_PROPAGATOR = TraceContextTextMapPropagator()


def request_id_from(incoming: str | None) -> str:
    """The client's X-Request-ID when it is sane, else a new one."""
    if incoming is not None and _SANE_REQUEST_ID.fullmatch(incoming):
        return incoming
    # Unique, not secret: the Mersenne Twister is ~20x cheaper than a getrandom() call.
    return f"{random.getrandbits(128):032x}"


@dataclass(slots=True)  # not frozen: a frozen dataclass's __init__ costs ~3x
class RequestScope:
    """One request from its start to its answer (``open_scope``, then ``leave`` when the
    transport's synchronous part is done, ``finish`` when the answer is known)."""

    telemetry: Telemetry
    method: str  # as the client sent it (the access line)
    method_label: str  # bounded (the metrics)
    route: str
    path: str
    request_id: str
    started: float
    trace_id: int
    span_id: int
    span: trace.Span | None
    _otel_token: object
    _request_token: Token[RequestContext | None] | None

    def leave(self) -> None:
        """Restore the context the request was entered from (the answer may go on in a
        task, which runs in a copy of the request's context)."""
        if self._request_token is not None:
            CURRENT_REQUEST.reset(self._request_token)
            self._request_token = None
        if self._otel_token is not None:
            otel_context.detach(self._otel_token)  # type: ignore[arg-type]  # attach's token
            self._otel_token = None

    def fail(self, exc: BaseException) -> None:
        """An unhandled error answered with a 500: on the span, never to the client."""
        if self.span is not None:
            self.span.record_exception(exc)
            self.span.set_status(Status(StatusCode.ERROR, type(exc).__name__))

    def finish(
        self,
        status: int,
        body_bytes: int,
        client_ip: str,
        facts: Facts | None = None,
    ) -> None:
        """The span, the HTTP metrics and the access line of the answer. ``facts``: how the
        answer was made, as its ``X-Gateway-*`` headers say (cache, upstream, attempts,
        block, consensus): span attributes ``gateway.<fact>``, access-line fields ``<fact>``
        (named when the line is rendered, off the request's path)."""
        telemetry = self.telemetry
        metrics = telemetry.metrics
        elapsed = time.perf_counter() - self.started
        metrics.in_flight -= 1
        exemplar = None
        span = self.span
        if span is not None:
            if facts is not None:
                span.set_attributes({f"gateway.{k}": v for k, v in facts.fields().items()})
            span.set_attributes(
                {
                    "http.request.method": self.method_label,
                    "http.route": self.route,
                    "url.path": self.path,
                    "http.response.status_code": status,
                    "gateway.request_id": self.request_id,
                }
            )
            if status >= 500:
                span.set_status(Status(StatusCode.ERROR))
            span.end()
            exemplar = {"trace_id": f"{self.trace_id:032x}"}
        metrics.observe_http(self.method_label, self.route, status, elapsed, exemplar)
        if telemetry.access_log:
            write_access_line(
                self.method,
                self.route,
                self.path,
                status,
                elapsed,
                body_bytes,
                client_ip,
                self.request_id,
                self.trace_id,
                self.span_id,
                facts,
            )


def open_scope(  # noqa: PLR0913, PLR0917  # what a transport knows of a request
    telemetry: Telemetry,
    method: str,
    method_label: str,
    route: str,
    path: str,
    request_id: str,
    carrier: Mapping[str, str] | None = None,
) -> RequestScope:
    """A request's scope, entered: its trace decided (``carrier``: its headers, for an
    incoming ``traceparent``), its server span started when sampled and made current, its
    RequestContext set, and counted in flight."""
    header = carrier.get("traceparent") if carrier is not None else None
    parent: Parent | None = parse_traceparent(header) if header is not None else None
    trace_id, sampled = telemetry.decider.decide(parent)
    span: trace.Span | None = None
    otel_token = None
    if sampled:
        span = telemetry.server_tracer.start_span(
            f"{method_label} {route}",
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
    telemetry.metrics.in_flight += 1
    return RequestScope(
        telemetry,
        method,
        method_label,
        route,
        path,
        request_id,
        time.perf_counter(),
        trace_id,
        span_id,
        span,
        otel_token,
        token,
    )
