"""The gateway's HTTP/1.1 client to a node: keep-alive POSTs of JSON-RPC bodies.

A call to a node is the gateway's commonest outbound request, and aiohttp's client cost
about 100 us of CPU for each (its request and response objects, a task and a timer per
request, the cookie jar, redirects, decompression), where these calls need none of it: a
POST of bytes to one URL, the reply's status and bytes back. ``NodeClient`` keeps a few
connections to one node open and writes each request in one call; the reply is framed
strictly (``ReplyFramer``) and anything it does not understand closes the connection and
fails the call, which the pool then sends elsewhere.

What a reply may be: ``HTTP/1.x <3 digits>`` then header lines ended by CRLF (obs-fold,
bare CR or LF refused), within ``MAX_HEAD_BYTES`` and ``MAX_HEADERS`` fields; a body framed
by one ``Content-Length`` of plain digits, by ``Transfer-Encoding: chunked`` (extensions and
trailers read and dropped), or by the connection's end; 1xx replies skipped; a body larger
than ``max_reply_bytes`` refused. No content coding is asked for, so one that comes is an
error. ``http`` and ``https`` URLs; ``user:password@`` in the URL is sent as Basic auth.

A request is never sent twice: once its bytes are written the node may act on them (a raw
transaction), so what to do after a failure is the pool's to judge (reads fail over,
transactions are not sent again). A kept-alive connection that the node closed while idle
is dropped when its end arrives, before it could be reused, and one idle for longer than
``IDLE_S`` is not reused.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import re
import ssl
import time
from collections import deque
from dataclasses import dataclass
from typing import Final
from urllib.parse import unquote, urlsplit

MAX_HEAD_BYTES: Final = 64 * 1024
MAX_HEADERS: Final = 128
IDLE_S: Final = 15.0  # an idle connection is closed after this (a node's own timeout is longer)
_STATUS = re.compile(rb"HTTP/1\.([01]) ([0-9]{3})(?: [\t\x20-\x7e\x80-\xff]*)?")
_FIELD = re.compile(rb"([!#$%&'*+\-.^_`|~0-9A-Za-z]+):[\t ]*([\t\x20-\x7e\x80-\xff]*?)[\t ]*")
_CHUNK_SIZE = re.compile(rb"([0-9A-Fa-f]{1,16})(?:[\t ]*;[\t\x20-\x7e\x80-\xff]*)?")


class NodeConnectError(OSError):
    """The node could not be reached: nothing of the request was sent."""


class NodeReplyError(OSError):
    """The node's reply was cut short or is not HTTP this client reads (the request was
    sent: the node may have acted on it)."""


@dataclass(slots=True)
class Reply:
    status: int
    body: bytes
    keep_alive: bool


@dataclass(slots=True)
class _Head:
    status: int
    keep_alive: bool
    length: int | None  # None: chunked, or framed by the connection's end
    chunked: bool


def _head_of(head: bytes, max_reply_bytes: int) -> _Head | None:
    """A reply's head (without its blank line); None for a 1xx, which another follows."""
    lines = head.split(b"\r\n")  # a bare CR or LF is left in a line, which then matches not
    status_line = _STATUS.fullmatch(lines[0])
    if status_line is None:
        raise NodeReplyError("the reply is not HTTP/1.1")
    if len(lines) - 1 > MAX_HEADERS:
        raise NodeReplyError("the reply has too many header fields")
    fields: dict[bytes, list[bytes]] = {}
    for line in lines[1:]:
        field = _FIELD.fullmatch(line)
        if field is None:
            raise NodeReplyError("the reply has a malformed header field")
        fields.setdefault(field[1].lower(), []).append(field[2])
    status = int(status_line[2])
    if 100 <= status < 200:
        return None
    if any(
        value.lower() not in (b"", b"identity") for value in fields.get(b"content-encoding", [])
    ):
        raise NodeReplyError("the reply is content-coded, which was not asked for")
    tokens = {
        t.strip().lower() for value in fields.get(b"connection", []) for t in value.split(b",")
    }
    keep_alive = b"close" not in tokens and (status_line[1] == b"1" or b"keep-alive" in tokens)
    return _framing(status, keep_alive, fields, max_reply_bytes)


def _framing(
    status: int, keep_alive: bool, fields: dict[bytes, list[bytes]], max_reply_bytes: int
) -> _Head:
    """How the body of a reply with these header ``fields`` is framed (RFC 9112, 6.3)."""
    codings = _tokens(fields, b"transfer-encoding")
    lengths = set(fields.get(b"content-length", []))
    if codings:
        if codings != [b"chunked"]:
            raise NodeReplyError("the reply's transfer coding is not chunked")
        if lengths:
            raise NodeReplyError("the reply has both a length and a transfer coding")
        return _Head(status, keep_alive, None, chunked=True)
    if len(lengths) > 1:
        raise NodeReplyError("the reply has conflicting lengths")
    if lengths:
        value = lengths.pop()
        if not value.isdigit():
            raise NodeReplyError("the reply's length is not a number")
        _check_size(int(value), max_reply_bytes)
        return _Head(status, keep_alive, int(value), chunked=False)
    if status in (204, 304):
        return _Head(status, keep_alive, 0, chunked=False)
    return _Head(status, False, None, chunked=False)  # framed by the connection's end


def _tokens(fields: dict[bytes, list[bytes]], name: bytes) -> list[bytes]:
    """The comma-separated tokens of every ``name`` field, lower case, in order."""
    return [
        token.strip().lower()
        for value in fields.get(name, [])
        for token in value.split(b",")
        if token.strip()
    ]


def _check_size(size: int, max_reply_bytes: int) -> None:
    if size > max_reply_bytes:
        raise NodeReplyError(f"the reply is larger than {max_reply_bytes} bytes")


class _Chunks:
    """A chunked body (RFC 9112, 7.1) as it arrives: extensions and trailers dropped."""

    def __init__(self, max_reply_bytes: int) -> None:
        self.max_reply_bytes = max_reply_bytes
        self.parts: list[bytes] = []
        self.size = 0
        self.left = -1  # bytes of the current chunk still to come (-1: at a size line)
        self.in_trailers = False

    def feed(self, buffer: bytearray) -> bytes | None:
        """Take what ``buffer`` holds of the body; the body once it is whole."""
        while True:
            if self.in_trailers:
                return self._trailers(buffer)
            if self.left < 0:
                line = _take_line(buffer)
                if line is None:
                    return None
                size = _CHUNK_SIZE.fullmatch(line)
                if size is None:
                    raise NodeReplyError("the reply's chunk size is malformed")
                self.left = int(size[1], 16)
                self.in_trailers = self.left == 0
                _check_size(self.size + self.left, self.max_reply_bytes)
            elif len(buffer) < self.left + 2:
                return None
            else:
                if buffer[self.left : self.left + 2] != b"\r\n":
                    raise NodeReplyError("the reply's chunk is not ended by CRLF")
                self.parts.append(bytes(buffer[: self.left]))
                self.size += self.left
                del buffer[: self.left + 2]
                self.left = -1

    def _trailers(self, buffer: bytearray) -> bytes | None:
        while (line := _take_line(buffer)) is not None:
            if not line:
                return b"".join(self.parts)
            if _FIELD.fullmatch(line) is None:
                raise NodeReplyError("the reply has a malformed trailer")
        return None


def _take_line(buffer: bytearray) -> bytes | None:
    end = buffer.find(b"\r\n")
    if end < 0:
        if len(buffer) > MAX_HEAD_BYTES:
            raise NodeReplyError("the reply has a line too long")
        return None
    line = bytes(buffer[:end])
    del buffer[: end + 2]
    return line


class ReplyFramer:
    """Where each reply in a connection's bytes ends, and what it says."""

    def __init__(self, max_reply_bytes: int) -> None:
        self.max_reply_bytes = max_reply_bytes
        self._buffer = bytearray()
        self._head: _Head | None = None
        self._chunks: _Chunks | None = None

    def feed(self, data: bytes) -> Reply | None:
        """Add bytes; the reply once it is whole (NodeReplyError when it cannot be one)."""
        self._buffer += data
        head = self._head
        while head is None:
            end = self._buffer.find(b"\r\n\r\n")
            if end < 0 or end > MAX_HEAD_BYTES:
                if len(self._buffer) > MAX_HEAD_BYTES:
                    raise NodeReplyError("the reply's head is too long")
                return None
            head = _head_of(bytes(self._buffer[:end]), self.max_reply_bytes)
            del self._buffer[: end + 4]
        self._head = head
        return self._body(head)

    def eof(self) -> Reply | None:
        """The connection ended: the reply it completes (a body framed by the end), if any."""
        head = self._head
        if head is None or head.length is not None or head.chunked:
            return None
        _check_size(len(self._buffer), self.max_reply_bytes)
        return Reply(head.status, bytes(self._buffer), keep_alive=False)

    def _body(self, head: _Head) -> Reply | None:
        buffer = self._buffer
        if head.chunked:
            if self._chunks is None:
                self._chunks = _Chunks(self.max_reply_bytes)
            body = self._chunks.feed(buffer)
            if body is None:
                return None
            self._chunks = None
        elif head.length is None:
            _check_size(len(buffer), self.max_reply_bytes)
            return None  # until the connection ends
        elif len(buffer) < head.length:
            return None
        else:
            body = bytes(buffer[: head.length])
            del buffer[: head.length]
        self._head = None
        # Bytes past the reply that nobody asked for: the connection is not used again.
        return Reply(head.status, body, keep_alive=head.keep_alive and not buffer)


class _Connection(asyncio.Protocol):
    """One keep-alive connection to the node; one request on it at a time."""

    def __init__(self, client: NodeClient) -> None:
        self._client = client
        self._framer = ReplyFramer(client.max_reply_bytes)
        self._pending_reply: asyncio.Future[Reply] | None = None
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.idle_since = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # a stream's: a Transport

    @property
    def reusable(self) -> bool:
        return not self.closed and self.transport is not None and not self.transport.is_closing()

    def send(self, request: bytes) -> asyncio.Future[Reply]:
        if self.transport is None or self.transport.is_closing():
            raise NodeConnectError("the connection is closed")  # nothing was written
        waiter = asyncio.get_running_loop().create_future()
        self._pending_reply = waiter
        self.transport.write(request)
        return waiter

    def data_received(self, data: bytes) -> None:
        try:
            reply = self._framer.feed(data)
        except NodeReplyError as exc:
            self._fail(exc)
            return
        if reply is not None:
            self._resolve(reply)

    def eof_received(self) -> bool:
        try:
            reply = self._framer.eof()
        except NodeReplyError as exc:
            self._fail(exc)
            return False
        if reply is not None:
            self._resolve(reply)
        return False  # the transport closes

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._client.forget(self)
        waiter, self._pending_reply = self._pending_reply, None
        if waiter is not None and not waiter.done():
            detail = "the node closed the connection before its reply was complete"
            error = NodeReplyError(detail if exc is None else f"{detail}: {exc}")
            error.__cause__ = exc
            waiter.set_exception(error)

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def _resolve(self, reply: Reply) -> None:
        waiter, self._pending_reply = self._pending_reply, None
        if waiter is None or waiter.done():  # a reply nobody waits for: not this protocol
            self.close()
            return
        if not reply.keep_alive:
            self.close()
        waiter.set_result(reply)

    def _fail(self, exc: NodeReplyError) -> None:
        waiter, self._pending_reply = self._pending_reply, None
        self.close()
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)


class NodeClient:
    """Keep-alive POSTs to one node URL, at most ``max_connections`` at once."""

    def __init__(
        self,
        url: str,
        *,
        max_connections: int = 100,
        max_reply_bytes: int = 256 * 2**20,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        self.host = parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.max_connections = max_connections
        self.max_reply_bytes = max_reply_bytes
        self._ssl = (
            (ssl_context or ssl.create_default_context()) if parts.scheme == "https" else None
        )
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        host = f"[{self.host}]" if ":" in self.host else self.host
        default_port = parts.port is None or parts.port == (443 if self._ssl else 80)
        authority = host if default_port else f"{host}:{self.port}"
        lines = [f"POST {target} HTTP/1.1", f"Host: {authority}"]
        if parts.username is not None:
            secret = f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode()
            lines.append(f"Authorization: Basic {base64.b64encode(secret).decode()}")
        lines += ["Content-Type: application/json", "Accept: application/json"]
        self._head = ("\r\n".join(lines) + "\r\n").encode()
        self._idle: deque[_Connection] = deque()
        self._open: set[_Connection] = set()
        self._connecting = 0
        self._slot_waiters: deque[asyncio.Future[None]] = deque()
        self._closed = False

    async def post(self, body: bytes, *, traceparent: str = "") -> Reply:
        """POST ``body``; the reply (any status). NodeConnectError when the node could not
        be reached, NodeReplyError when its reply failed; the caller bounds the time."""
        extra = f"traceparent: {traceparent}\r\n".encode() if traceparent else b""
        request = b"%s%sContent-Length: %d\r\n\r\n%s" % (self._head, extra, len(body), body)
        connection = await self._acquire()
        try:
            reply = await connection.send(request)
        except BaseException:
            connection.close()  # cancelled or failed mid-exchange: its bytes are unknown
            self._release(connection)
            raise
        self._release(connection)
        return reply

    async def close(self) -> None:
        self._closed = True
        for connection in list(self._open):
            connection.close()
        self._open.clear()
        self._idle.clear()

    def forget(self, connection: _Connection) -> None:
        """A connection that ended (its protocol says so)."""
        if connection in self._open:
            self._open.discard(connection)
            self._wake_one()
        with contextlib.suppress(ValueError):
            self._idle.remove(connection)

    async def _acquire(self) -> _Connection:
        now = time.monotonic()
        while self._idle:
            connection = self._idle.pop()  # the most recently used: the likeliest alive
            if not connection.reusable or now - connection.idle_since > IDLE_S:
                connection.close()
                continue
            return connection
        while len(self._open) + self._connecting >= self.max_connections:
            waiter = asyncio.get_running_loop().create_future()
            self._slot_waiters.append(waiter)
            try:
                await waiter
            finally:
                if waiter in self._slot_waiters:
                    self._slot_waiters.remove(waiter)
            if self._idle:
                return await self._acquire()
        return await self._connect()

    async def _connect(self) -> _Connection:
        if self._closed:
            raise NodeConnectError("the client is closed")
        self._connecting += 1
        try:
            _, connection = await asyncio.get_running_loop().create_connection(
                lambda: _Connection(self),
                self.host,
                self.port,
                ssl=self._ssl,
                server_hostname=self.host if self._ssl else None,
            )
        except (OSError, ssl.SSLError) as exc:
            raise NodeConnectError(f"cannot connect to {self.host}:{self.port}: {exc}") from exc
        finally:
            self._connecting -= 1
            self._wake_one()
        self._open.add(connection)
        return connection

    def _release(self, connection: _Connection) -> None:
        if connection.closed or self._closed:
            self.forget(connection)
            return
        connection.idle_since = time.monotonic()
        self._idle.append(connection)
        self._wake_one()

    def _wake_one(self) -> None:
        while self._slot_waiters:
            waiter = self._slot_waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
