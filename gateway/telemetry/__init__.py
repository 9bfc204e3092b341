"""Observability: structlog logs, Prometheus metrics, OpenTelemetry traces, tied per request."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

from aiohttp import web
from opentelemetry.sdk.trace.export import SpanExporter
from prometheus_client.aiohttp import make_aiohttp_handler

from gateway.build import build_commit, build_version
from gateway.config import SETTINGS, Settings
from gateway.telemetry.logging import active_sink, configure_logging
from gateway.telemetry.looplag import lag_probe
from gateway.telemetry.metrics import Metrics
from gateway.telemetry.middleware import FACTS, request_middleware, set_request_id
from gateway.telemetry.sampling import TraceDecider
from gateway.telemetry.state import (
    CURRENT_REQUEST,
    REQUEST_ID,
    TELEMETRY,
    RequestContext,
    Telemetry,
    is_sampled,
)
from gateway.telemetry.tracing import build_tracer_providers, spans_consumed

__all__ = [
    "CURRENT_REQUEST",
    "FACTS",
    "REQUEST_ID",
    "SPAN_EXPORTERS",
    "TELEMETRY",
    "Metrics",
    "RequestContext",
    "Telemetry",
    "configure_logging",
    "is_sampled",
    "metrics_handler",
    "request_middleware",
    "set_request_id",
    "telemetry_ctx",
]

SPAN_EXPORTERS = web.AppKey("span_exporters", Sequence[SpanExporter])


async def telemetry_ctx(app: web.Application) -> AsyncIterator[None]:
    """Metrics registry and tracer provider; on cleanup, buffered spans are flushed."""
    settings: Settings = app[SETTINGS]
    version = build_version()
    exporters = app.get(SPAN_EXPORTERS, ())
    providers = build_tracer_providers(settings.tracing, version=version, exporters=exporters)
    provider = providers.main
    app[TELEMETRY] = Telemetry(
        metrics=Metrics.create(version=version, commit=build_commit()),
        tracer_provider=provider,
        tracer=provider.get_tracer("gateway", version),
        server_tracer=providers.decided.get_tracer("gateway", version),
        decider=TraceDecider(
            settings.tracing, consumed=spans_consumed(settings.tracing, exporters=exporters)
        ),
        access_log=settings.log.access_log,
        trust_forwarded_for=settings.server.trust_forwarded_for,
    )
    sink = active_sink()
    try:
        async with lag_probe(app[TELEMETRY].metrics.event_loop_lag):
            if sink is None:
                yield
            else:
                async with sink.batching():
                    yield
    finally:
        provider.shutdown()  # flushes the batch processor


async def metrics_handler(request: web.Request) -> web.StreamResponse:
    """GET /metrics: Prometheus text, or OpenMetrics (with exemplars) when asked for."""
    handler = make_aiohttp_handler(request.app[TELEMETRY].metrics.registry)
    return await handler(request)
