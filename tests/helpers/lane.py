"""A test server whose connections have the lane, as ``gateway serve``'s do, and a raw
HTTP/1.1 connection to write requests to it byte for byte and read its replies."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp.test_utils import TestServer
from aiohttp.web_runner import BaseRunner

from gateway.lane import GatewayRunner


class LaneTestServer(TestServer):
    async def _make_runner(self, **kwargs: Any) -> BaseRunner:
        return GatewayRunner(self.app, **kwargs)


@contextlib.asynccontextmanager
async def started_servers() -> AsyncIterator[Callable[..., Awaitable[LaneTestServer]]]:
    """``start(app, kind=LaneTestServer, **runner_kwargs)``: a running test server, closed
    on exit with every other one started."""
    servers: list[LaneTestServer] = []

    async def start(app, *, kind: type[LaneTestServer] = LaneTestServer, **kwargs: Any):
        server = kind(app)
        await server.start_server(**kwargs)
        servers.append(server)
        return server

    try:
        yield start
    finally:
        for server in servers:
            await server.close()


@dataclass
class Reply:
    status: int
    reason: str
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k.lower() == name.lower()), None)

    def json(self):
        return json.loads(self.body)


def post(payload, *, headers: dict[str, str] | None = None, path: str = "/rpc") -> bytes:
    body = json.dumps(payload).encode()
    lines = [f"POST {path} HTTP/1.1", "Host: gateway", "Content-Type: application/json"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


class Connection:
    """One raw keep-alive connection: bytes written as given, replies read one by one."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, server: LaneTestServer) -> Connection:
        return cls(*await asyncio.open_connection(server.host, server.port))

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def reply(self) -> Reply:
        head = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), 10)
        status_line, *lines = head[:-4].decode().split("\r\n")
        _, status, reason = status_line.split(" ", 2)
        headers = [tuple(line.split(": ", 1)) for line in lines]
        reply = Reply(int(status), reason, headers, b"")  # type: ignore[arg-type]
        reply.body = await self.reader.readexactly(int(reply.header("Content-Length") or 0))
        return reply

    async def closed(self) -> bool:
        return await asyncio.wait_for(self.reader.read(1), 10) == b""

    def close(self) -> None:
        self.writer.close()


def answered(server: LaneTestServer) -> int:
    runner = server.runner
    assert isinstance(runner, GatewayRunner)
    return runner.lane.answered if runner.lane is not None else 0


async def exchange(server: LaneTestServer, *requests: bytes) -> list[Reply]:
    connection = await Connection.open(server)
    try:
        replies = []
        for raw in requests:
            await connection.send(raw)
            replies.append(await connection.reply())
        return replies
    finally:
        connection.close()
