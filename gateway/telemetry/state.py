"""The telemetry handles an app shares with its handlers, the request's context, and keys."""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass

from aiohttp import web
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import Tracer

from gateway.telemetry.metrics import Metrics
from gateway.telemetry.sampling import TraceDecider


@dataclass(frozen=True, slots=True)
class Telemetry:
    metrics: Metrics
    tracer_provider: TracerProvider
    tracer: Tracer
    # Starts a server span for a request the middleware decided to sample (sampler always on).
    server_tracer: Tracer
    decider: TraceDecider
    access_log: bool
    trust_forwarded_for: bool


@dataclass(slots=True)  # not frozen: a frozen dataclass's __init__ costs ~3x (object.__setattr__)
class RequestContext:
    """What every log line and node call of a request carries, set once per request.

    ``span_id`` is the server span's (sampled) or an id of its own (unsampled: the node
    still sees the trace, flag 00)."""

    request_id: str
    trace_id: int
    span_id: int
    sampled: bool

    def traceparent(self) -> str:
        return f"00-{self.trace_id:032x}-{self.span_id:016x}-{'01' if self.sampled else '00'}"


CURRENT_REQUEST: ContextVar[RequestContext | None] = ContextVar("gateway_request", default=None)


def is_sampled() -> bool:
    """Whether the current trace is sampled, i.e. whether child spans are worth making: the
    request's decision, else (background work) the current OpenTelemetry span's."""
    current = CURRENT_REQUEST.get()
    if current is not None:
        return current.sampled
    return trace.get_current_span().get_span_context().trace_flags.sampled


TELEMETRY = web.AppKey("telemetry", Telemetry)
REQUEST_ID = web.RequestKey("request_id", str)
