"""Drive an aiohttp app in process, through aiohttp's own HTTP protocol, with no socket.

Raw request bytes go into the server's protocol (``data_received``), the response bytes
come out of a transport that records them. Everything aiohttp does per request runs (HTTP
parsing, routing, the middlewares, the handler, response rendering, keep-alive); only the
kernel's socket calls and the selector are left out, which are the same for every app. The
time per request is therefore the app's own CPU cost, steady to about a microsecond on a
quiet core where a load generator over loopback wobbles by several.
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Callable
from typing import Any

from aiohttp import web

from gateway.config import SETTINGS
from gateway.lane import GatewayRunner


class _Transport(asyncio.Transport):
    """Collects what the server writes; resolves a future once a whole response is in."""

    def __init__(self) -> None:
        super().__init__()
        self.buffer = bytearray()
        self.waiter: asyncio.Future[bytes] | None = None
        self._closing = False
        self.protocol: Any = None  # whichever protocol the connection has now

    def set_protocol(self, protocol: Any) -> None:
        self.protocol = protocol

    def get_protocol(self) -> Any:
        return self.protocol

    def write(self, data: Any) -> None:  # bytes-like
        self.buffer += data
        self._check()

    def writelines(self, list_of_data: Any) -> None:
        for data in list_of_data:
            self.buffer += data
        self._check()

    def _check(self) -> None:
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0 or self.waiter is None or self.waiter.done():
            return
        head = bytes(self.buffer[:end]).lower()
        marker = head.find(b"content-length:")
        if marker < 0:
            return
        length = int(head[marker + 15 :].split(b"\r\n", 1)[0])
        if len(self.buffer) >= end + 4 + length:
            response = bytes(self.buffer[: end + 4 + length])
            del self.buffer[: end + 4 + length]
            self.waiter.set_result(response)

    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        self._closing = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 40000), "sockname": ("127.0.0.1", 8080)}.get(
            name, default
        )

    def get_write_buffer_size(self) -> int:
        return 0

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass


class Driver:
    """One keep-alive connection into ``app``, opened by ``await Driver.open(app)``."""

    def __init__(self, runner: web.AppRunner, protocol: Any, transport: _Transport) -> None:
        self.runner = runner
        self.protocol = protocol
        self.transport = transport

    @classmethod
    async def open(cls, app: web.Application) -> Driver:
        """A gateway app gets its lane (``server.lane``), as under ``gateway serve``."""
        runner: web.AppRunner = (
            GatewayRunner(app, access_log=None, handle_signals=False)
            if SETTINGS in app
            else web.AppRunner(app, access_log=None, handle_signals=False)
        )
        await runner.setup()
        assert runner.server is not None
        protocol = runner.server()
        transport = _Transport()
        transport.set_protocol(protocol)
        protocol.connection_made(transport)
        return cls(runner, protocol, transport)

    async def connection(self) -> Driver:
        """Another keep-alive connection into the same app."""
        assert self.runner.server is not None
        protocol = self.runner.server()
        transport = _Transport()
        transport.set_protocol(protocol)
        protocol.connection_made(transport)
        return Driver(self.runner, protocol, transport)

    async def close(self) -> None:
        self.transport.protocol.connection_lost(None)
        await self.runner.cleanup()

    async def request(self, raw: bytes) -> bytes:
        waiter = asyncio.get_running_loop().create_future()
        self.transport.waiter = waiter
        # As a socket's bytes arrive: in a callback of their own, after what is ready.
        asyncio.get_running_loop().call_soon(self.transport.protocol.data_received, raw)
        return await waiter


def http_get(path: str, headers: dict[str, str] | None = None) -> bytes:
    lines = [f"GET {path} HTTP/1.1", "Host: 127.0.0.1:8080"]
    lines += [f"{key}: {value}" for key, value in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def http_post(path: str, body: bytes, headers: dict[str, str] | None = None) -> bytes:
    lines = [
        f"POST {path} HTTP/1.1",
        "Host: 127.0.0.1:8080",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
    ]
    lines += [f"{key}: {value}" for key, value in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def concurrent_rate(
    app: web.Application, requests: list[bytes], *, connections: int
) -> tuple[float, float]:
    """Each of ``requests`` once, over ``connections`` connections each sending its next
    one when the last is answered: (requests/s, CPU microseconds per request, all of the
    process's threads). Every answer must be a 2xx."""
    first = await Driver.open(app)
    drivers = [first] + [await first.connection() for _ in range(connections - 1)]
    pending = iter(requests)

    async def run(driver: Driver) -> None:
        for raw in pending:
            reply = await driver.request(raw)
            if not reply.startswith(b"HTTP/1.1 2"):
                raise RuntimeError(reply[:300].decode(errors="replace"))

    try:
        wall, cpu = time.perf_counter(), time.process_time()
        await asyncio.gather(*(run(driver) for driver in drivers))
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    finally:
        for driver in drivers[1:]:
            driver.transport.protocol.connection_lost(None)
        await first.close()
    return len(requests) / wall, cpu / len(requests) * 1e6


async def measure_all(
    cases: list[tuple[str, Callable[[], web.Application], bytes]], *, count: int, repeats: int
) -> list[tuple[str, float]]:
    """Microseconds per request of each case, every app open at once and the runs
    interleaved (case 1, 2, ..., then again), so that each sees the same machine; the best
    run of each is its cost."""
    drivers = []
    try:
        for _name, build, raw in cases:
            driver = await Driver.open(build())
            drivers.append(driver)
            reply = await driver.request(raw)
            status = int(reply.split(b" ", 2)[1])
            if status >= 400:
                raise RuntimeError(f"{status}: {reply[-300:]!r}")
            for _ in range(300):  # warm caches and metric children
                await driver.request(raw)
        best = [float("inf")] * len(cases)
        for _ in range(repeats):
            for index, (driver, (_name, _build, raw)) in enumerate(
                zip(drivers, cases, strict=True)
            ):
                gc.collect()
                started = time.perf_counter()
                for _ in range(count):
                    await driver.request(raw)
                best[index] = min(best[index], (time.perf_counter() - started) / count)
        return [(name, cost * 1e6) for (name, _, _), cost in zip(cases, best, strict=True)]
    finally:
        for driver in drivers:
            await driver.close()
