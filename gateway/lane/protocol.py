"""The lane's connection protocol, and the runner whose sites make it.

Every new connection starts with a ``LaneProtocol`` of the gateway's own. It frames each
request strictly (``framing``) and answers those the lane may answer, in order, one at a
time. The first request that is not the lane's (another route, a header outside the plain
set, bytes outside the strict subset, an upgrade) hands the connection, for good and at
that request's first byte, to the protocol aiohttp's documented low-level ``web.Server``
makes: asyncio's public ``Transport.set_protocol``, then that protocol's
``connection_made`` and ``data_received`` with every byte not yet answered. Nothing here
reads or writes aiohttp's private state; aiohttp serves what it is given as it would on a
connection of its own.

The lane never accepts what aiohttp's parser would refuse: its subset is narrower (the
whole head within aiohttp's line limit, at most ``max_headers`` fields), and anything
outside it is aiohttp's to judge.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import structlog
from aiohttp import web

from gateway.config import SETTINGS
from gateway.heldwrites import HeldWrites
from gateway.lane.answers import Lane, LaneRequest
from gateway.lane.framing import UNFRAMED, Frame, Framer

# Past this much unsent reply data, or this much received and not yet answered, the lane
# stops reading until the client reads (a pipelining client that never reads must not grow
# memory).
MAX_UNSENT_BYTES = 1 << 20
KEEPALIVE_S = 75.0  # aiohttp's default keepalive_timeout
MAX_HEADERS = 128  # aiohttp's default max_headers

log = structlog.get_logger("gateway.lane")


class LaneProtocol(asyncio.Protocol):
    """One connection, the lane's until a request is not its own (see the module)."""

    __slots__ = (
        "_active_at",
        "_answering",
        "_closing",
        "_framer",
        "_keepalive",
        "_lane",
        "_paused_reading",
        "_paused_writing",
        "_peer_ip",
        "_pending",
        "_server",
        "_writes",
        "transport",
    )

    def __init__(self, server: LaneServer) -> None:
        self._server = server
        self._lane = server.lane
        self._writes = server.writes
        self._framer = Framer(server.max_body, max_headers=server.max_headers)
        self.transport: asyncio.Transport | None = None
        self._pending = b""  # received, not yet answered nor handed over
        self._answering: asyncio.Task[bytes] | None = None  # an answer being made
        self._paused_reading = False
        self._paused_writing = False
        self._closing = False  # shutting down: close once the answer in progress is sent
        self._keepalive: asyncio.TimerHandle | None = None
        self._active_at = 0.0  # when the last whole request was answered
        self._peer_ip: str | None = None

    # --- asyncio's protocol ---------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # a stream server's (uvloop's is no subclass)
        self._server.connections.add(self)
        self._idle_from_now()

    def data_received(self, data: bytes) -> None:
        self._pending = self._pending + data if self._pending else data
        if self._answering is not None or self._paused_writing:
            self._hold_if_too_much()
            return
        self._serve()

    def eof_received(self) -> bool:
        """The client will send no more: an answer in progress is still sent."""
        if self._answering is not None:
            self._closing = True
            return True  # keep the transport open for the reply
        if self.transport is not None:
            self._writes.flush(self.transport)  # the transport closes once it sent them
        return False

    def connection_lost(self, exc: BaseException | None) -> None:  # noqa: ARG002  # asyncio's signature
        self._server.connections.discard(self)
        self._cancel_keepalive()
        if self.transport is not None:
            self._writes.drop(self.transport)
        if self._pending and self.transport is not None:  # a request cut short?
            frame = self._framer.read(self._pending, 0)
            if isinstance(frame, Frame) and frame.plain and frame.route in self._lane.routes:
                self._lane.hung_up(frame, self._peer())
        self._pending = b""
        self.transport = None

    def pause_writing(self) -> None:
        self._paused_writing = True

    def resume_writing(self) -> None:
        self._paused_writing = False
        if self._answering is None and self._pending:
            self._serve()

    # --- serving --------------------------------------------------------------------

    def _serve(self) -> None:  # noqa: PLR0911  # one exit per way a request can end
        """Answer the whole requests received, in order, until one must wait or is not the
        lane's."""
        data, self._pending = self._pending, b""
        frames = self._frames(data)
        if frames is None:
            self._hand_over(data)  # aiohttp's parser answers all of it, as it would alone
            return
        start, size = 0, len(data)
        transport = self.transport
        for frame in frames:
            if transport is None or self._closing:
                return
            if transport.get_write_buffer_size() + self._writes.held(transport) > MAX_UNSENT_BYTES:
                self._pending = data[start:]
                self._hold_if_too_much()
                return
            if not (frame.plain and frame.route in self._lane.routes):
                self._hand_over(data[start:])
                return
            if frame.end > size:  # the body is not all here
                self._pending = data[start:]
                return
            reply = self._answer(frame, data)
            if reply is None:
                self._hand_over(data[start:])
                return
            start = frame.end
            if not isinstance(reply, bytes):
                self._pending = data[start:]
                self._answering = reply
                reply.add_done_callback(self._answered)
                return
            self._writes.write(transport, reply)
        if start < size:  # a head not all here
            self._pending = data[start:]
        self._idle_from_now()

    def _frames(self, data: bytes) -> list[Frame] | None:
        """The requests whose heads are all in ``data`` (the last one's body may not be);
        None when bytes outside the strict subset follow. aiohttp parses every message a
        read brings before it serves one, and a parse error drops them all for its 400:
        the lane then answers none of them either, so both send the same bytes."""
        frames: list[Frame] = []
        start, size = 0, len(data)
        framer = self._framer
        while start < size:
            frame = framer.read(data, start)
            if frame is None:
                break
            if frame is UNFRAMED:
                return None
            assert isinstance(frame, Frame)  # noqa: S101  # for the type checker
            frames.append(frame)
            start = frame.end
        return frames

    def _answer(self, frame: Frame, data: bytes) -> bytes | asyncio.Task[bytes] | None:
        request = LaneRequest(
            data[frame.body_start : frame.end],
            self._peer(),
            frame.content_type,
            frame.authorization,
        )
        try:
            return self._lane.answer(frame.route, request, frame.request_id, frame.forwarded_for)
        except Exception:  # a bug in an answerer: aiohttp serves the request, and says so
            log.exception("lane answer failed; served by aiohttp")
            return None

    def _answered(self, answer: asyncio.Task[bytes]) -> None:
        self._answering = None
        transport = self.transport
        if transport is None or transport.is_closing() or answer.cancelled():
            return
        if answer.exception() is not None:  # a bug in the lane itself: nothing sane to send
            log.error("lane answer failed", exc_info=answer.exception())
            self._close()
            return
        # Written now, not held: an answer a task made (a node's reply) comes in a pass of
        # its own, and holding it delayed the client's next call (eth_blockNumber with the
        # cache off: 21.1k req/s written now, 17.4k held). What the pass held goes first.
        self._writes.flush(transport)
        transport.write(answer.result())
        if self._closing:
            self._close()
            return
        if self._paused_reading:
            self._paused_reading = False
            transport.resume_reading()
        if self._pending:
            self._serve()
        else:
            self._idle_from_now()

    def _hand_over(self, data: bytes) -> None:
        """The connection is aiohttp's from ``data`` on (a request's first byte)."""
        transport = self.transport
        assert transport is not None  # noqa: S101  # only while connected
        self._server.connections.discard(self)
        self._cancel_keepalive()
        self._writes.flush(transport)  # the lane's replies go before aiohttp's
        if self._paused_reading:
            self._paused_reading = False
            transport.resume_reading()
        protocol = self._server.aiohttp_server()  # web.Server: aiohttp's protocol factory
        transport.set_protocol(protocol)
        protocol.connection_made(transport)
        if self._paused_writing:
            protocol.pause_writing()
        protocol.data_received(data)
        self.transport = None

    def _hold_if_too_much(self) -> None:
        too_much = len(self._pending) > MAX_UNSENT_BYTES
        if too_much and not self._paused_reading and self.transport is not None:
            self.transport.pause_reading()
            self._paused_reading = True

    def _peer(self) -> str:
        """The client ip as ``request.remote`` gives it."""
        if self._peer_ip is None:
            peer = self.transport.get_extra_info("peername") if self.transport else None
            self._peer_ip = str(peer[0]) if isinstance(peer, (list, tuple)) else str(peer or "")
        return self._peer_ip

    # --- keep-alive and shutdown ----------------------------------------------------

    def _idle_from_now(self) -> None:
        """Close the connection if no whole request arrives within the keep-alive time
        (a partial request included: a body that never comes does not hold it open). One
        timer a connection, moved on lazily: a request only notes the time."""
        timeout = self._server.keepalive_s
        if timeout <= 0 or self.transport is None:
            return
        loop = asyncio.get_running_loop()
        self._active_at = loop.time()
        if self._keepalive is None:
            self._keepalive = loop.call_at(self._active_at + timeout, self._expire)

    def _cancel_keepalive(self) -> None:
        if self._keepalive is not None:
            self._keepalive.cancel()
            self._keepalive = None

    def _expire(self) -> None:
        self._keepalive = None
        if self.transport is None:
            return
        loop = asyncio.get_running_loop()
        deadline = self._active_at + self._server.keepalive_s
        if self._answering is not None or deadline > loop.time():  # active since: wait on
            self._keepalive = loop.call_at(
                max(deadline, loop.time() + 0.1) if self._answering is None else loop.time() + 1,
                self._expire,
            )
            return
        self._close()

    def _close(self) -> None:
        """Close once the replies held for the connection are given to its transport."""
        if self.transport is not None:
            self._writes.flush(self.transport)
            self.transport.close()

    async def shutdown(self) -> None:
        """Close once the answer in progress, if any, is sent; an idle connection now."""
        self._closing = True
        answering = self._answering
        if answering is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.shield(answering)
            await asyncio.sleep(0)  # its done callback has written the reply
        self._close()


class LaneServer:
    """The protocol factory the runner's sites listen with: a ``LaneProtocol`` per
    connection, which hands over to ``aiohttp_server`` (aiohttp's own factory)."""

    def __init__(  # the limits the lane shares with aiohttp
        self,
        aiohttp_server: web.Server,
        lane: Lane,
        *,
        max_body: int,
        max_headers: int,
        keepalive_s: float,
    ) -> None:
        self.aiohttp_server = aiohttp_server
        self.lane = lane
        self.max_body = max_body
        self.max_headers = max_headers
        self.keepalive_s = keepalive_s
        self.connections: set[LaneProtocol] = set()
        self.writes = HeldWrites()  # the replies of a loop's pass, written as it ends

    def __call__(self) -> LaneProtocol:
        return LaneProtocol(self)

    async def shutdown(self, timeout_s: float) -> None:
        """Every lane connection closed once its answer in progress is sent (at most
        ``timeout_s``); aiohttp's own connections are aiohttp's to close."""
        connections = list(self.connections)
        if not connections:
            return
        _, late = await asyncio.wait(
            [asyncio.ensure_future(c.shutdown()) for c in connections], timeout=timeout_s
        )
        for task in late:
            task.cancel()
        for connection in connections:
            if connection.transport is not None:
                connection.transport.abort()


class GatewayRunner(web.AppRunner):
    """``web.AppRunner`` whose sites listen with the lane of the routes the app's features
    registered (``server``), unless its settings turn the lane off (``server.lane``)."""

    def __init__(self, app: web.Application, **kwargs: Any) -> None:  # noqa: ANN401  # AppRunner's arguments
        super().__init__(app, **kwargs)
        # The handler limits given to aiohttp are the lane's too.
        self.handler_kwargs = kwargs
        self.lane: Lane | None = None
        self.lane_server: LaneServer | None = None

    async def setup(self) -> None:
        await super().setup()
        aiohttp_server = super().server
        assert aiohttp_server is not None  # noqa: S101  # setup made it
        settings = self.app[SETTINGS].server
        self.lane = Lane.of(self.app) if settings.lane else None
        if self.lane is not None:
            kwargs = self.handler_kwargs
            self.lane_server = LaneServer(
                aiohttp_server,
                self.lane,
                max_body=settings.max_body_bytes,
                max_headers=min(int(kwargs.get("max_headers", MAX_HEADERS)), MAX_HEADERS),
                keepalive_s=float(kwargs.get("keepalive_timeout", KEEPALIVE_S)),
            )

    @property
    def server(self) -> web.Server | None:
        """The protocol factory sites listen with: the lane's, else aiohttp's."""
        if self.lane_server is not None and super().server is not None:
            return self.lane_server  # type: ignore[return-value]  # a protocol factory, as sites use it
        return super().server

    async def shutdown(self) -> None:
        """Called by ``cleanup`` once the sites stopped: the lane's connections finish the
        answers they are making (within the shutdown timeout), then the app's hooks run."""
        if self.lane_server is not None:
            timeout = self.handler_kwargs.get("shutdown_timeout", 60.0)
            await self.lane_server.shutdown(float(timeout))
        await super().shutdown()

    async def cleanup(self) -> None:
        await super().cleanup()
        self.lane_server = None


__all__ = ["GatewayRunner", "LaneProtocol", "LaneServer"]
