"""A test server whose connections have the lane, as ``gateway serve``'s do."""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestServer
from aiohttp.web_runner import BaseRunner

from gateway.lane import GatewayRunner


class LaneTestServer(TestServer):
    async def _make_runner(self, **kwargs: Any) -> BaseRunner:
        return GatewayRunner(self.app, **kwargs)
