"""Wait for a condition, with a deadline, instead of sleeping a guessed time."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")

_POLL_S = 0.01


async def eventually(
    condition: Callable[[], T | Awaitable[T]], *, timeout_s: float = 10.0, what: str = "condition"
) -> T:
    """``condition()``'s first true value (it may be a coroutine function); fails the test
    with ``what`` at the deadline."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value  # type: ignore[return-value]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        await asyncio.sleep(_POLL_S)


def wait_until(
    condition: Callable[[], T], *, timeout_s: float = 10.0, what: str = "condition"
) -> T:
    """``eventually`` for synchronous tests."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(_POLL_S)
