"""Which event loop serves: uvloop when it is installed (``server.event_loop = "auto"``; a
dependency everywhere but Windows), else asyncio's own; ``bench/rpc_http.py --loop``
compares the two. Once the lane answered cached reads in the connection protocol and the
nodes were reached by the gateway's own client, most of a request's time was the loop's
and the socket calls: uvloop made a cached ``eth_chainId`` 36 % faster (19.0k -> 25.9k
req/s, ``bench/peers.py``, one core)."""

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
