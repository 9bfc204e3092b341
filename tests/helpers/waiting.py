"""Wait for a condition, with a deadline, instead of sleeping a guessed time."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

_POLL_S = 0.005


async def eventually(
    condition: Callable[[], object], *, timeout_s: float = 10.0, what: str = "condition"
) -> None:
    """Return once ``condition()`` is true; fail the test with ``what`` at the deadline."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        await asyncio.sleep(_POLL_S)


def wait_until(
    condition: Callable[[], object], *, timeout_s: float = 10.0, what: str = "condition"
) -> None:
    """``eventually`` for synchronous tests."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(_POLL_S)
