"""Freed memory handed back to the operating system (``server.heap_trim_interval_s``).

glibc's malloc keeps what a long-running process frees inside its heaps: it gives memory
back only from the top of a heap, so one live allocation above a freed stretch keeps the
stretch resident. Under a steady load the resident set then creeps up with every peak
while what the process holds stays the same: in a soak (``tests/chaos/test_soak.py``) the
main heap's free space went from 3.2 to 7.3 MiB in four minutes while its used space stayed
at 30 MiB. ``malloc_trim(0)`` returns the free pages of every arena, wherever they lie
(``madvise``); ``heap_ctx`` calls it every interval. Where the C library has no
``malloc_trim`` (musl, macOS) it does nothing.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import time
from collections.abc import AsyncIterator, Callable

import structlog
from aiohttp import web

from gateway.background import running
from gateway.config import SETTINGS

log = structlog.get_logger("gateway.heap")


def malloc_trim() -> Callable[[], bool] | None:
    """glibc's ``malloc_trim(0)`` (True when it released memory), or None without it."""
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        trim = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return lambda: bool(trim(0))


async def trim_periodically(trim: Callable[[], bool], interval_s: float) -> None:
    while True:
        await asyncio.sleep(interval_s)
        started = time.perf_counter()
        released = trim()  # ~1 ms for a heap of tens of MiB; the loop waits meanwhile
        log.debug(
            "heap trimmed", released=released, ms=round((time.perf_counter() - started) * 1e3, 2)
        )


async def heap_ctx(app: web.Application) -> AsyncIterator[None]:
    interval_s = app[SETTINGS].server.heap_trim_interval_s
    trim = malloc_trim() if interval_s > 0 else None
    if trim is None:
        yield
        return
    async with running(trim_periodically(trim, interval_s), name="heap-trim"):
        yield
