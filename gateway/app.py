"""The app factory: the table of contents of the service."""

from __future__ import annotations

from collections.abc import Sequence

from aiohttp import web
from opentelemetry.sdk.trace.export import SpanExporter

from gateway import health, openapi
from gateway.config import SETTINGS, Settings
from gateway.cors import cors_middleware
from gateway.error_responses import render_exception
from gateway.heap import heap_ctx
from gateway.identity import routes as identity
from gateway.records import routes as records
from gateway.relay import routes as relay
from gateway.rpc import routes as rpc
from gateway.rpc.context import upstream_ctx
from gateway.storage import storage_ctx
from gateway.storage.redis import redis_ctx
from gateway.telemetry import SPAN_EXPORTERS, request_middleware, telemetry_ctx
from gateway.webapp import routes as webapp


def create_app(
    settings: Settings, *, span_exporters: Sequence[SpanExporter] = ()
) -> web.Application:
    """Build the application; synchronous and I/O-free. Resources open in ``cleanup_ctx``.

    ``span_exporters`` receive every finished span synchronously (tests use the SDK's
    in-memory exporter); OTLP export is configured by the settings.
    """
    origins = settings.server.cors_origins
    app = web.Application(
        # Outermost first: one layer for the request's telemetry and its error rendering,
        # then CORS (only when origins are configured), which renders errors it sees too.
        middlewares=[
            request_middleware(render_exception),
            *([cors_middleware(origins)] if origins else []),
        ],
        client_max_size=settings.server.max_body_bytes,
    )
    app[SETTINGS] = settings
    app[SPAN_EXPORTERS] = tuple(span_exporters)
    app.cleanup_ctx.append(telemetry_ctx)  # first in, last out: spans of cleanup still flush
    app.cleanup_ctx.append(heap_ctx)
    app.cleanup_ctx.append(storage_ctx)
    app.cleanup_ctx.append(redis_ctx)
    app.cleanup_ctx.append(upstream_ctx)  # the nodes, and web3.py on one of them
    app.cleanup_ctx.append(identity.identity_ctx)
    app.cleanup_ctx.append(rpc.rpc_ctx)
    app.cleanup_ctx.append(records.records_ctx)
    app.cleanup_ctx.append(relay.relay_ctx)
    for feature in (health, openapi, identity, rpc, records, relay):
        app.add_routes(feature.routes)
    if settings.webapp.enabled:
        app.add_routes(webapp.routes)
    return app
