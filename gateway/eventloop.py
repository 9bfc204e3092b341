"""Which event loop serves: uvloop when it is installed (``server.event_loop = "auto"``),
else asyncio's own; ``bench/rpc_http.py --loop`` compares the two. uvloop is not a
dependency: on this service's request path it measured within noise of asyncio."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, Literal, TypeVar

from gateway.errors import SettingsError

T = TypeVar("T")
EventLoopChoice = Literal["auto", "asyncio", "uvloop"]


def loop_factory(choice: EventLoopChoice) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's loop factory, or None for asyncio's default loop."""
    if choice == "asyncio":
        return None
    try:
        import uvloop  # noqa: PLC0415  # optional: only when chosen and installed
    except ImportError as exc:
        if choice == "uvloop":
            raise SettingsError(
                ["server.event_loop: uvloop is not installed (pip install uvloop)"]
            ) from exc
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def run(main: Coroutine[Any, Any, T], choice: EventLoopChoice) -> T:
    with asyncio.Runner(loop_factory=loop_factory(choice)) as runner:
        return runner.run(main)
