"""The event loop choice: uvloop only when asked for (or installed, under "auto")."""

import asyncio
import importlib.util

import pytest

from gateway import eventloop
from gateway.errors import SettingsError


def test_asyncio_is_asyncio():
    assert eventloop.loop_factory("asyncio") is None
    assert eventloop.run(asyncio.sleep(0, result=7), "asyncio") == 7


def test_auto_takes_uvloop_only_when_installed():
    installed = importlib.util.find_spec("uvloop") is not None
    assert (eventloop.loop_factory("auto") is not None) == installed
    assert eventloop.run(asyncio.sleep(0, result=3), "auto") == 3


def test_asking_for_a_missing_uvloop_says_so():
    if importlib.util.find_spec("uvloop") is not None:
        pytest.skip("uvloop is installed here")
    with pytest.raises(SettingsError, match="uvloop is not installed"):
        eventloop.loop_factory("uvloop")
