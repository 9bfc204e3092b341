"""A TCP proxy on loopback in front of a real server (a node, PostgreSQL), for faults
between the gateway and it: ``forward`` (bytes pass), ``reset`` (every connection is reset
at once, open ones too), ``blackhole`` (a partition: connections stay open, every byte is
dropped, new connections are accepted and go nowhere), or stopped (connection refused)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from collections.abc import AsyncIterator


class TcpProxy:
    def __init__(self, target_port: int, target_host: str = "127.0.0.1") -> None:
        self.target = (target_host, target_port)
        self.mode = "forward"
        self.port = 0
        self._server: asyncio.Server | None = None
        self._open: set[asyncio.StreamWriter] = set()
        self._stranded: set[asyncio.StreamWriter] = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> TcpProxy:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        """Nothing listens any more; open connections are reset."""
        self._reset_open()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    def reset_all(self) -> None:
        self.mode = "reset"
        self._reset_open()

    def _reset_open(self) -> None:
        for writer in list(self._open):
            _reset(writer)
        self._open.clear()

    def partition(self) -> None:
        self.mode = "blackhole"

    def heal(self) -> None:
        """Bytes pass again; connections opened during the partition are reset."""
        self.mode = "forward"
        for writer in list(self._stranded):
            _reset(writer)
        self._stranded.clear()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.mode == "reset":
            _reset(writer)
            return
        if self.mode == "blackhole":
            self._stranded.add(writer)
            with contextlib.suppress(ConnectionError, OSError):
                while await reader.read(65536):
                    pass
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            _reset(writer)
            return
        self._open.update({writer, up_writer})
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
        self._open.difference_update({writer, up_writer})

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                if self.mode == "blackhole":
                    continue  # dropped, as a partition drops packets
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            with contextlib.suppress(Exception):
                writer.close()


def _reset(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


@contextlib.asynccontextmanager
async def proxy_to(port: int) -> AsyncIterator[TcpProxy]:
    """A started proxy in front of ``127.0.0.1:port``, stopped on the way out."""
    proxy = await TcpProxy(port).start()
    try:
        yield proxy
    finally:
        await proxy.stop()
