"""OpenTelemetry: the app's TracerProvider, built from TracingSettings (the OTEL_* variables)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import SERVICE_NAME, SERVICE_VERSION, Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
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


def spans_consumed(settings: TracingSettings, *, exporters: Sequence[SpanExporter] = ()) -> bool:
    """Whether finished spans go anywhere: tracing on and an OTLP endpoint or an exporter."""
    return settings.enabled and (bool(settings.exporter_endpoint) or bool(exporters))


@dataclass(frozen=True, slots=True)
class Providers:
    """``main``: the app's provider, with the configured sampler, which owns the span
    processors and flushes them on shutdown. ``decided``: for spans already decided to be
    sampled (see ``sampling.TraceDecider``): the same resource and processors, a sampler
    that always records, never shut down itself."""

    main: TracerProvider
    decided: TracerProvider


def build_tracer_providers(
    settings: TracingSettings, *, version: str, exporters: Sequence[SpanExporter] = ()
) -> Providers:
    """OTLP/HTTP export when an endpoint is configured; ``exporters`` are added synchronously
    (tests pass an in-memory exporter)."""
    resource = Resource.create(
        {
            **settings.resource_attributes,
            SERVICE_NAME: settings.service_name,
            SERVICE_VERSION: version,
        }
    )
    processors: list[SpanProcessor] = []
    if settings.enabled and settings.exporter_endpoint:
        headers = (
            parse_headers(settings.exporter_headers.get_secret_value())
            if settings.exporter_headers
            else None
        )
        processors.append(
            BatchSpanProcessor(
                OTLPSpanExporter(
                    endpoint=settings.exporter_endpoint,
                    headers=headers,
                    timeout=settings.exporter_timeout_s,
                )
            )
        )
    processors += [SimpleSpanProcessor(exporter) for exporter in exporters]
    consumed = spans_consumed(settings, exporters=exporters)
    main = TracerProvider(
        resource=resource, sampler=build_sampler(settings) if consumed else ALWAYS_OFF
    )
    decided = TracerProvider(sampler=ALWAYS_ON, resource=resource, shutdown_on_exit=False)
    for processor in processors:
        main.add_span_processor(processor)
        decided.add_span_processor(processor)
    return Providers(main, decided)
