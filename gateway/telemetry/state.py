"""The telemetry handles an app shares with its handlers, and their keys."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import Tracer

from gateway.telemetry.metrics import Metrics


@dataclass(frozen=True, slots=True)
class Telemetry:
    metrics: Metrics
    tracer_provider: TracerProvider
    tracer: Tracer
    access_log: bool
    trust_forwarded_for: bool


TELEMETRY = web.AppKey("telemetry", Telemetry)
REQUEST_ID = web.RequestKey("request_id", str)
