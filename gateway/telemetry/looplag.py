"""Event-loop lag: how late the loop runs a timer, i.e. how long other work kept it busy.

Every request, span and upstream call of a process shares one event loop on one core; when
that core is saturated (or a handler blocks), every request waits. CPU shows the core is
busy; lag shows that requests are queueing behind it.
"""

from __future__ import annotations

import asyncio
import contextlib

from prometheus_client import Histogram

from gateway.background import running

PROBE_INTERVAL_S = 0.1


async def probe_lag(histogram: Histogram, interval_s: float = PROBE_INTERVAL_S) -> None:
    """Sleep ``interval_s`` at a time and observe how much later than asked the loop woke."""
    loop = asyncio.get_running_loop()
    while True:
        asked = loop.time() + interval_s
        await asyncio.sleep(interval_s)
        histogram.observe(max(0.0, loop.time() - asked))


def lag_probe(histogram: Histogram) -> contextlib.AbstractAsyncContextManager[None]:
    """The probe, running while the block runs."""
    return running(probe_lag(histogram), name="event-loop-lag-probe")
