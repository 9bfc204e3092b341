"""The trace decision of a request, made before the OpenTelemetry SDK is touched.

The SDK makes a span object for every request even when the sampler drops it (~8 us). The
middleware asks ``TraceDecider.decide`` first, with the same rules as the configured SDK
sampler (W3C ``traceparent`` parent, ``TraceIdRatioBased`` on the trace id's low 64 bits),
and only a sampled request reaches the SDK, through a tracer whose sampler is always on
(the decision is made). An unsampled request still has a trace id and span id: they are on
its log lines and go to the node in ``traceparent`` with the sampled flag off.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from gateway.config import TracingSettings

_RATIO_LIMIT = 1 << 64
_HEX = frozenset("0123456789abcdef")


@dataclass(frozen=True, slots=True)
class Parent:
    """A valid incoming W3C trace context."""

    trace_id: int
    span_id: int
    sampled: bool


def parse_traceparent(value: str) -> Parent | None:
    """``00-<32 hex trace id>-<16 hex span id>-<2 hex flags>`` (later versions may append
    fields); None when malformed or when an id is all zeros, as the W3C spec says."""
    if len(value) < 55 or value[2] != "-" or value[35] != "-" or value[52] != "-":
        return None
    version = value[:2]
    if version == "ff" or (version == "00" and len(value) != 55):
        return None
    if len(value) > 55 and value[55] != "-":
        return None
    head = value[:55]
    if not _HEX.issuperset(head.replace("-", "")):
        return None
    trace_id = int(value[3:35], 16)
    span_id = int(value[36:52], 16)
    if trace_id == 0 or span_id == 0:
        return None
    return Parent(trace_id, span_id, sampled=bool(int(value[53:55], 16) & 1))


class TraceDecider:
    """Root rule (always, never, or a ratio of trace ids) and whether a parent's decision
    is followed (the ``parentbased_*`` samplers).

    ``consumed``: whether anything takes finished spans (an OTLP endpoint, an exporter of
    the app). Without a consumer nothing is sampled, whatever the sampler says: a span
    nobody exports changes no output and costs half the throughput of a cached read. Trace
    ids are still made (log lines, the node's ``traceparent``)."""

    def __init__(self, settings: TracingSettings, *, consumed: bool = True) -> None:
        sampler = settings.sampler if settings.enabled and consumed else "always_off"
        self.parent_based = sampler.startswith("parentbased_")
        root = sampler.removeprefix("parentbased_")
        ratio = {"always_on": 1.0, "always_off": 0.0}.get(root, settings.sampler_arg)
        self._bound = round(ratio * _RATIO_LIMIT)

    def sample_root(self, trace_id: int) -> bool:
        return (trace_id & (_RATIO_LIMIT - 1)) < self._bound

    def decide(self, parent: Parent | None) -> tuple[int, bool]:
        """(trace id, sampled) of a request with ``parent`` (or none)."""
        if parent is None:
            trace_id = random.getrandbits(128) or 1
            return trace_id, self.sample_root(trace_id)
        if self.parent_based:
            return parent.trace_id, parent.sampled
        return parent.trace_id, self.sample_root(parent.trace_id)


def new_span_id() -> int:
    return random.getrandbits(64) or 1
