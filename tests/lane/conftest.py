"""The lane's tests run on both event loops: uvloop, which production serves on by default
(``server.event_loop = auto``), and asyncio's own. They differ where the lane's timing
lies: uvloop reads a connection's bytes and its end in one pass of the loop, asyncio in
two."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Mapping

import pytest


def pytest_asyncio_loop_factories(
    config: pytest.Config,  # the hook's signature
    item: pytest.Item,
) -> Mapping[str, Callable[[], asyncio.AbstractEventLoop]]:
    factories: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {
        "asyncio": asyncio.new_event_loop
    }
    if sys.platform != "win32":
        import uvloop  # not on Windows

        factories["uvloop"] = uvloop.new_event_loop
    return factories
