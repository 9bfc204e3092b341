"""Background tasks that live as long as a block (an app's cleanup_ctx, a sink's batching)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Coroutine
from typing import Any


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
