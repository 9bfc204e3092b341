"""OpenTelemetry: the app's TracerProvider, built from TracingSettings (the OTEL_* variables)."""

from __future__ import annotations

from collections.abc import Sequence

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import SERVICE_NAME, SERVICE_VERSION, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    ParentBased,
    Sampler,
    TraceIdRatioBased,
)

from gateway.config import TracingSettings


def build_sampler(settings: TracingSettings) -> Sampler:
    ratio = TraceIdRatioBased(settings.sampler_arg)
    return {
        "always_on": ALWAYS_ON,
        "always_off": ALWAYS_OFF,
        "traceidratio": ratio,
        "parentbased_always_on": ParentBased(ALWAYS_ON),
        "parentbased_always_off": ParentBased(ALWAYS_OFF),
        "parentbased_traceidratio": ParentBased(ratio),
    }[settings.sampler]


def parse_headers(raw: str) -> dict[str, str]:
    """OTEL_EXPORTER_OTLP_HEADERS: ``key1=value1,key2=value2`` (values URL-encoded)."""
    from urllib.parse import unquote  # noqa: PLC0415  # start-up only

    pairs = (item.partition("=") for item in raw.split(",") if "=" in item)
    return {unquote(key.strip()): unquote(value.strip()) for key, _, value in pairs}


def build_tracer_provider(
    settings: TracingSettings, *, version: str, exporters: Sequence[SpanExporter] = ()
) -> TracerProvider:
    """OTLP/HTTP export when an endpoint is configured; ``exporters`` are added synchronously
    (tests pass an in-memory exporter)."""
    resource = Resource.create(
        {
            **settings.resource_attributes,
            SERVICE_NAME: settings.service_name,
            SERVICE_VERSION: version,
        }
    )
    sampler = build_sampler(settings) if settings.enabled else ALWAYS_OFF
    provider = TracerProvider(resource=resource, sampler=sampler)
    if settings.enabled and settings.exporter_endpoint:
        headers = (
            parse_headers(settings.exporter_headers.get_secret_value())
            if settings.exporter_headers
            else None
        )
        provider.add_span_processor(
            BatchSpanProcessor(
                OTLPSpanExporter(
                    endpoint=settings.exporter_endpoint,
                    headers=headers,
                    timeout=settings.exporter_timeout_s,
                )
            )
        )
    for exporter in exporters:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider


def decided_provider(provider: TracerProvider) -> TracerProvider:
    """A provider for spans already decided to be sampled (see ``sampling.TraceDecider``):
    the same resource and span processors as ``provider``, a sampler that always records.
    ``provider`` owns the processors and flushes them on shutdown."""
    return TracerProvider(
        sampler=ALWAYS_ON,
        resource=provider.resource,
        shutdown_on_exit=False,
        active_span_processor=provider._active_span_processor,  # noqa: SLF001  # shared, by design
    )
