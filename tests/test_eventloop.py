"""The event loop choice: uvloop (a dependency) under "auto" and when asked for, asyncio's
own when asked for or where uvloop is missing."""

import asyncio
import sys

import pytest

from gateway import eventloop
from gateway.errors import SettingsError


def test_asyncio_is_asyncio():
    assert eventloop.loop_factory("asyncio") is None
    assert eventloop.run(asyncio.sleep(0, result=7), "asyncio") == 7


@pytest.mark.skipif(sys.platform == "win32", reason="uvloop is not a dependency on Windows")
@pytest.mark.parametrize("choice", ["auto", "uvloop"])
def test_auto_and_uvloop_serve_on_uvloop(choice):
    async def loop_type() -> str:
        return type(asyncio.get_running_loop()).__module__

    assert eventloop.loop_factory(choice) is not None
    assert eventloop.run(loop_type(), choice).startswith("uvloop")


def test_without_uvloop_auto_is_asyncio_and_asking_for_it_says_so(monkeypatch):
    monkeypatch.setitem(sys.modules, "uvloop", None)  # as where it is not installed
    assert eventloop.loop_factory("auto") is None
    with pytest.raises(SettingsError, match="uvloop is not installed"):
        eventloop.loop_factory("uvloop")
