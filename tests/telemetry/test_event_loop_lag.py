"""The event-loop lag probe: a loop kept busy shows up in gateway_event_loop_lag_seconds."""

import asyncio
import time

import pytest
from prometheus_client import CollectorRegistry, Histogram

from gateway.telemetry import TELEMETRY
from gateway.telemetry.looplag import probe_lag
from tests.helpers.waiting import eventually


def _sample(registry: CollectorRegistry, name: str) -> float:
    value = registry.get_sample_value(name)
    assert value is not None
    return value


async def test_a_blocked_loop_is_measured_as_lag() -> None:
    registry = CollectorRegistry()
    lag = Histogram("lag_seconds", "test", buckets=(0.01, 0.1, 1.0), registry=registry)
    probe = asyncio.create_task(probe_lag(lag, interval_s=0.02))
    await eventually(lambda: _sample(registry, "lag_seconds_count") >= 2, what="idle probes")
    time.sleep(0.3)  # the point: a handler that blocks the loop
    await eventually(lambda: _sample(registry, "lag_seconds_sum") >= 0.25, what="the late probe")
    probe.cancel()
    with pytest.raises(asyncio.CancelledError):
        await probe
    assert _sample(registry, "lag_seconds_sum") >= 0.25
    over_100ms = _sample(registry, "lag_seconds_count") - registry.get_sample_value(
        "lag_seconds_bucket", {"le": "0.1"}
    )
    assert over_100ms >= 1  # the probe that woke after the block


@pytest.mark.integration
async def test_the_gateway_exports_event_loop_lag(gateway):
    metrics = gateway.server.app[TELEMETRY].metrics
    await eventually(
        lambda: metrics.registry.get_sample_value("gateway_event_loop_lag_seconds_count"),
        what="a probe",
    )
    body = await (await gateway.get("/metrics")).text()
    count = next(
        line
        for line in body.splitlines()
        if line.startswith("gateway_event_loop_lag_seconds_count")
    )
    assert float(count.split()[-1]) >= 1
