"""Memory the process freed goes back to the OS (gateway/heap.py): a freed stretch below a
live allocation, which glibc keeps resident, is released by the trim, and the app's
heap_ctx trims every ``server.heap_trim_interval_s``."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest
from aiohttp import web

from gateway.config import SETTINGS
from gateway.heap import heap_ctx, malloc_trim

PAGE = os.sysconf("SC_PAGE_SIZE")
MIB = 2**20


def _resident() -> int:
    return int(Path("/proc/self/statm").read_text().split()[1]) * PAGE


def _freed_below_a_live_allocation() -> bytes:
    """64 MiB in 2 KiB pieces (malloc's, not Python's small-object arenas), one piece more
    kept above them, and the 64 MiB freed: the heap cannot shrink past the live piece."""
    pieces = [os.urandom(8) * 256 for _ in range(32 * 1024)]
    pinned = os.urandom(8) * 256
    del pieces
    return pinned


def test_the_trim_releases_what_glibc_keeps():
    trim = malloc_trim()
    if trim is None:
        pytest.skip("no malloc_trim in this C library")
    trim()
    pinned = _freed_below_a_live_allocation()
    kept = _resident()
    trim()
    released = kept - _resident()
    assert released > 32 * MIB, f"only {released / MIB:.1f} MiB released"
    assert pinned


@pytest.mark.parametrize("interval", ["0.05", "0"])
async def test_the_app_trims_every_interval_and_never_with_zero(make_settings, interval):
    if malloc_trim() is None:
        pytest.skip("no malloc_trim in this C library")
    malloc_trim()()
    app = web.Application()
    app[SETTINGS] = make_settings(GATEWAY_SERVER__HEAP_TRIM_INTERVAL_S=interval)
    context = heap_ctx(app)
    await anext(context)
    try:
        pinned = _freed_below_a_live_allocation()
        kept = _resident()
        await asyncio.sleep(0.3)
        released = kept - _resident()
    finally:
        with pytest.raises(StopAsyncIteration):
            await anext(context)
    if interval == "0":
        assert released < 8 * MIB
    else:
        assert released > 32 * MIB, f"only {released / MIB:.1f} MiB released"
    assert pinned
