"""The middleware's trace decision agrees with the OpenTelemetry SDK's samplers."""

import random

import pytest
from opentelemetry.sdk.trace.sampling import TraceIdRatioBased

from gateway.config import TracingSettings
from gateway.telemetry.sampling import Parent, TraceDecider, parse_traceparent

TRACE = "0af7651916cd43dd8448eb211c80319c"
SPAN = "b7ad6b7169203331"


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (f"00-{TRACE}-{SPAN}-01", Parent(int(TRACE, 16), int(SPAN, 16), sampled=True)),
        (f"00-{TRACE}-{SPAN}-00", Parent(int(TRACE, 16), int(SPAN, 16), sampled=False)),
        (f"01-{TRACE}-{SPAN}-01-extra", Parent(int(TRACE, 16), int(SPAN, 16), sampled=True)),
        (f"00-{TRACE}-{SPAN}-01-extra", None),  # version 00 has exactly four fields
        (f"ff-{TRACE}-{SPAN}-01", None),
        (f"00-{'0' * 32}-{SPAN}-01", None),
        (f"00-{TRACE}-{'0' * 16}-01", None),
        (f"00-{TRACE.upper()}-{SPAN}-01", None),  # lower-case hex only
        (f"00-{TRACE}-{SPAN}-0g", None),
        (f"00_{TRACE}-{SPAN}-01", None),
        ("", None),
        ("garbage", None),
    ],
)
def test_traceparent(header, expected):
    assert parse_traceparent(header) == expected


def test_the_ratio_rule_is_the_sdks():
    settings = TracingSettings(sampler="traceidratio", sampler_arg=0.25)
    decider = TraceDecider(settings)
    sdk = TraceIdRatioBased(0.25)
    rng = random.Random(7)  # noqa: S311  # reproducible ids, not secrets
    ids = [rng.getrandbits(128) for _ in range(5000)]
    ours = [decider.sample_root(trace_id) for trace_id in ids]
    theirs = [sdk.should_sample(None, trace_id, "x").decision.is_sampled() for trace_id in ids]
    assert ours == theirs
    assert 0.2 < sum(ours) / len(ours) < 0.3


def test_parent_based_follows_the_parent_and_others_do_not():
    parent = Parent(trace_id=(1 << 64) - 1, span_id=5, sampled=True)  # low bits over any bound
    unsampled = Parent(trace_id=1, span_id=5, sampled=False)  # low bits under any bound
    based = TraceDecider(TracingSettings(sampler="parentbased_traceidratio", sampler_arg=0.5))
    assert based.decide(parent) == (parent.trace_id, True)
    assert based.decide(unsampled) == (1, False)
    ratio = TraceDecider(TracingSettings(sampler="traceidratio", sampler_arg=0.5))
    assert ratio.decide(parent) == (parent.trace_id, False)
    assert ratio.decide(unsampled) == (1, True)


@pytest.mark.parametrize(
    ("settings", "sampled"),
    [
        (TracingSettings(sampler="always_on"), True),
        (TracingSettings(sampler="always_off"), False),
        (TracingSettings(sampler="parentbased_always_on"), True),
        (TracingSettings(enabled=False, sampler="always_on"), False),
    ],
)
def test_roots(settings, sampled):
    decider = TraceDecider(settings)
    decisions = {decider.decide(None)[1] for _ in range(50)}
    assert decisions == {sampled}
    assert TraceDecider(settings).decide(Parent(9, 9, sampled=True))[1] is (
        settings.enabled and settings.sampler != "always_off"
    )
