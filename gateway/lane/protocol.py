"""The lane inside aiohttp's connection protocol, and the runner that installs it.

``LaneRequestHandler`` is aiohttp's ``RequestHandler`` with ``data_received`` in front:
each request's bytes are framed strictly (``framing``); a request the lane may answer is
answered right there, when aiohttp has nothing in progress on the connection, so replies
stay in order; every other request is handed to aiohttp's parser whole, so the parser
always stands at a message boundary when the lane looks at the next one. Bytes outside the
strict subset, an upgrade included, give the connection to aiohttp for good.

An answer that awaits (a record) holds the connection's next requests until it is sent,
and marks a request in progress for aiohttp, so that a graceful shutdown waits for it.

This reads and sets ``RequestHandler`` state aiohttp keeps private (``_waiter``,
``_messages``, ``_request_in_progress``, ``_handler_waiter``, the keep-alive clock, the
request counts); aiohttp is pinned to one minor version, and
``tests/lane/test_protocol.py`` fails first if any of them moves.
"""

from __future__ import annotations

import asyncio
from typing import Any

import structlog
from aiohttp import web
from aiohttp.web_protocol import RequestHandler

from gateway.config import SETTINGS
from gateway.lane.answers import Lane, LaneRequest
from gateway.lane.framing import UNFRAMED, Frame, Framer

# Past this much unsent reply data the lane lets aiohttp answer, which waits for the
# client to read (a pipelining client that never reads must not grow memory).
MAX_UNSENT_BYTES = 1 << 20

log = structlog.get_logger("gateway.lane")


class LaneRequestHandler(RequestHandler):
    __slots__ = (
        "_answering",
        "_claimed",
        "_framer",
        "_lane",
        "_lane_on",
        "_owed",
        "_paused_by_lane",
        "_peer_ip",
        "_pending",
    )

    def __init__(self, manager: web.Server, *, lane: Lane, max_body: int, **kwargs: Any) -> None:  # noqa: ANN401  # aiohttp's handler arguments
        super().__init__(manager, **kwargs)
        self._lane = lane
        self._lane_on = True
        self._claimed = False  # the first request was for a lane route
        self._answering: asyncio.Task[bytes] | None = None  # an answer being made
        self._paused_by_lane = False  # reading paused while requests queue behind it
        self._pending = b""  # the start of a request not all here yet
        self._owed = 0  # bytes of a request already handed to aiohttp, still to come
        self._framer = Framer(max_body)
        self._peer_ip: str | None = None

    def data_received(self, data: bytes) -> None:
        if not self._lane_on or not data:  # b"": aiohttp re-parsing what it holds
            super().data_received(data)
            return
        if self._force_close or self._close:
            return
        if self._answering is not None:  # what follows waits for the answer before it
            self._pending += data
            if len(self._pending) > MAX_UNSENT_BYTES and self.transport is not None:
                self.transport.pause_reading()
                self._paused_by_lane = True
            return
        if self._owed:
            taken = min(self._owed, len(data))
            self._owed -= taken
            super().data_received(data[:taken])
            data = data[taken:]
            if not data:
                return
        if self._pending:
            data = self._pending + data
            self._pending = b""
        if not self._claimed and not self._claim(data):
            return
        self._serve(data)

    def _claim(self, data: bytes) -> bool:
        """Whether the lane keeps a new connection: only one whose first request is for a
        lane route. The others (probes, records, browsers' preflights) never pay for the
        framing of their requests."""
        prefixes = self._lane.prefixes
        if data.startswith(prefixes):
            self._claimed = True
            return True
        if len(data) < max(map(len, prefixes)) and any(p.startswith(data) for p in prefixes):
            self._pending = data  # too short to tell yet
            return False
        self._lane_on = False
        super().data_received(data)
        return False

    def _serve(self, data: bytes) -> None:
        start, size = 0, len(data)
        while start < size:
            frame = self._framer.read(data, start)
            if frame is UNFRAMED:
                self._lane_on = False
                super().data_received(data[start:])
                return
            if frame is None:  # the head is not all here
                self._pending = data[start:]
                return
            assert isinstance(frame, Frame)  # noqa: S101  # for the type checker
            if frame.end > size:  # the body is not all here
                if self._answerable(frame):
                    self._pending = data[start:]
                else:  # aiohttp's: hand it over now, and the rest as it comes
                    self._owed = frame.end - size
                    super().data_received(data[start:])
                return
            reply = self._answer(frame, data) if self._answerable(frame) else None
            if reply is None:
                super().data_received(data[start : frame.end])
            elif isinstance(reply, bytes):
                self._sent(reply)
            else:
                self._pending = data[frame.end :]
                self._wait_for(reply)
                return
            start = frame.end

    def _wait_for(self, answer: asyncio.Task[bytes]) -> None:
        """An answer being made: the connection's next requests wait for it, and aiohttp
        sees a request in progress (a graceful shutdown waits for it too)."""
        self._answering = answer
        self._request_in_progress = True
        self._restart_keepalive()
        answer.add_done_callback(self._answered)

    def _answered(self, answer: asyncio.Task[bytes]) -> None:
        self._answering = None
        self._request_in_progress = False
        if self._handler_waiter is not None and not self._handler_waiter.done():
            self._handler_waiter.set_result(None)
        transport = self.transport
        if transport is None or transport.is_closing() or answer.cancelled():
            return
        if answer.exception() is not None:  # a bug in the lane itself: nothing sane to send
            log.error("lane answer failed", exc_info=answer.exception())
            transport.close()
            return
        self._sent(answer.result())
        if self._paused_by_lane:
            self._paused_by_lane = False
            transport.resume_reading()
        if self._pending and not (self._force_close or self._close):
            data, self._pending = self._pending, b""
            self._serve(data)

    def _answerable(self, frame: Frame) -> bool:
        return frame.plain and frame.route in self._lane.routes and self._idle()

    def _idle(self) -> bool:
        """aiohttp waits for the next request and holds none: an answer now is in order."""
        waiter = self._waiter
        transport = self.transport
        return (
            waiter is not None
            and not waiter.done()
            and not self._messages
            and not self._request_in_progress
            and self._payload_parser is None
            and not self._upgraded
            and transport is not None
            and transport.get_write_buffer_size() < MAX_UNSENT_BYTES
        )

    def _answer(self, frame: Frame, data: bytes) -> bytes | asyncio.Task[bytes] | None:
        request = LaneRequest(data[frame.body_start : frame.end], self._peer(), frame.content_type)
        try:
            return self._lane.answer(
                frame.route,
                request=request,
                request_id=frame.request_id,
                forwarded_for=frame.forwarded_for,
            )
        except Exception:  # a bug in an answerer: aiohttp serves the request, and says so
            log.exception("lane answer failed; served by aiohttp")
            return None

    def _peer(self) -> str:
        """The client ip as ``request.remote`` gives it."""
        if self._peer_ip is None:
            peer = self.transport.get_extra_info("peername") if self.transport else None
            self._peer_ip = str(peer[0]) if isinstance(peer, (list, tuple)) else str(peer or "")
        return self._peer_ip

    def _sent(self, reply: bytes) -> None:
        assert self.transport is not None  # noqa: S101  # _idle checked it
        self.transport.write(reply)
        self._request_count += 1
        if self._manager is not None:
            self._manager.requests_count += 1
        self._restart_keepalive()  # idle from now

    def _restart_keepalive(self) -> None:
        if self._keepalive_timeout > 0:
            loop = self._loop
            self._next_keepalive_close_time = loop.time() + self._keepalive_timeout
            if self._keepalive_handle is None:
                self._keepalive_handle = loop.call_at(
                    self._next_keepalive_close_time, self._process_keepalive
                )


class LaneServer(web.Server):
    """aiohttp's low-level server, making ``LaneRequestHandler`` connections."""

    def __init__(self, server: web.Server, lane: Lane, *, max_body: int) -> None:
        super().__init__(
            server.request_handler,
            request_factory=server.request_factory,
            handler_cancellation=server.handler_cancellation,
            loop=server._loop,  # noqa: SLF001  # the loop the server was made on
            **server._kwargs,  # noqa: SLF001  # the handler arguments given to the runner
        )
        self._lane = lane
        self._max_body = max_body

    def __call__(self) -> RequestHandler:
        return LaneRequestHandler(
            self, lane=self._lane, max_body=self._max_body, loop=self._loop, **self._kwargs
        )


class GatewayRunner(web.AppRunner):
    """``web.AppRunner`` whose connections have the lane of the routes the app's features
    registered, unless its settings turn the lane off (``server.lane``)."""

    def __init__(self, app: web.Application, **kwargs: Any) -> None:  # noqa: ANN401  # AppRunner's arguments
        super().__init__(app, **kwargs)
        self.lane: Lane | None = None

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        settings = self.app[SETTINGS].server
        self.lane = Lane.of(self.app) if settings.lane else None
        if self.lane is None:
            return server
        return LaneServer(server, self.lane, max_body=settings.max_body_bytes)


__all__ = ["GatewayRunner", "LaneRequestHandler", "LaneServer"]
