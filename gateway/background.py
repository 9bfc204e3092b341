"""Background tasks that live as long as a block (an app's cleanup_ctx, a sink's batching)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

from gateway.errors import Unavailable


async def cancel(*tasks: asyncio.Task[Any]) -> None:
    """Cancel ``tasks`` and wait until each has finished unwinding."""
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task


@contextlib.asynccontextmanager
async def running(*coroutines: Coroutine[Any, Any, object], name: str) -> AsyncIterator[None]:
    """Run each coroutine as a task while the block runs; cancelled and awaited after it."""
    tasks = [
        asyncio.create_task(coroutine, name=f"{name}-{index}" if index else name)
        for index, coroutine in enumerate(coroutines)
    ]
    try:
        yield
    finally:
        await cancel(*tasks)


class Rounds:
    """How a background loop's rounds go, said once per change, not once per round.

    A dependency that is unavailable (storage, the nodes, Redis: ``Unavailable``) is one
    warning when rounds start failing and one info line when they succeed again, each
    failed round counted (``count(reason)``); anything else is a bug, logged with its
    traceback every time."""

    def __init__(self, name: str, log: Any, count: Callable[[str], None]) -> None:  # noqa: ANN401  # a structlog logger
        self.name = name
        self.log = log
        self.count = count
        self.failing = False

    def failed(self, exc: Exception) -> None:
        if isinstance(exc, Unavailable):
            self.count("unavailable")
            if not self.failing:
                self.log.warning(
                    "background rounds failing",
                    loop=self.name,
                    code=exc.code,
                    detail=exc.detail or exc.message,
                )
            self.failing = True
            return
        self.count("error")
        self.log.error("background round failed", loop=self.name, exc_info=exc)

    def succeeded(self) -> None:
        if self.failing:
            self.log.info("background rounds recovered", loop=self.name)
            self.failing = False
