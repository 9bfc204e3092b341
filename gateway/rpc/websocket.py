"""JSON-RPC over WebSocket: the same calls, policy and limits as HTTP, plus eth_subscribe.

Each connection has a bounded send queue drained by its own writer task. Fan-out only ever
enqueues; a client whose queue is full is disconnected (close code 1008 when the close frame
still gets through, else the socket is cut), so a slow reader costs its own connection,
never the gateway's memory.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from dataclasses import dataclass

import structlog
from aiohttp import WSCloseCode, WSMsgType, web

from gateway.caller import Caller
from gateway.config import SETTINGS
from gateway.errors import RateLimited
from gateway.ratelimit import RateLimiterUnavailable
from gateway.rpc import jsonrpc
from gateway.rpc.jsonrpc import Call, RpcInvalidRequest, RpcParseError
from gateway.rpc.service import RpcService
from gateway.rpc.subscriptions import (
    SUPPORTED,
    SubscriptionHub,
    SubscriptionRefused,
    SubscriptionUnavailable,
    TooManyFeeds,
)
from gateway.telemetry import Metrics, set_request_id

log = structlog.get_logger("gateway.rpc.ws")

SLOW_CONSUMER = WSCloseCode.POLICY_VIOLATION


class Connection:
    """One client's WebSocket: its calls, its subscriptions, its send queue."""

    def __init__(
        self, ws: web.WebSocketResponse, caller: Caller, gateway: WebSocketGateway
    ) -> None:
        self.ws = ws
        self.caller = caller
        self.service = gateway.service
        self.hub = gateway.hub
        settings = gateway.service.settings
        self.queue: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=settings.ws_send_queue)
        self.max_subscriptions = settings.ws_max_subscriptions
        self.subscriptions: set[str] = set()
        self.too_slow = False

    def deliver(self, message: bytes) -> bool:
        """Enqueue without waiting; False (and the connection closes) when it is full."""
        if self.too_slow:
            return False
        try:
            self.queue.put_nowait(message)
        except asyncio.QueueFull:
            self.too_slow = True
            log.warning("websocket client too slow: disconnecting", key=self.caller.key)
            asyncio.get_running_loop().call_soon(self._close_slow)
            return False
        return True

    def _close_slow(self) -> None:
        self._closing = asyncio.ensure_future(
            self.ws.close(code=SLOW_CONSUMER, message=b"send queue full")
        )

    async def writer(self) -> None:
        """Drain the queue as text frames (what JSON-RPC clients expect)."""
        while (message := await self.queue.get()) is not None:
            await self.ws.send_str(message.decode())

    async def handle(self, data: str | bytes) -> None:
        try:
            parsed = jsonrpc.parse_body(
                data.encode() if isinstance(data, str) else data,
                max_batch=self.service.settings.max_batch,
            )
        except (RpcParseError, RpcInvalidRequest) as error:
            self.deliver(jsonrpc.error_bytes(None, error.rpc_code, error.message))
            return
        calls = [item for item in parsed.items if isinstance(item, Call)]
        try:
            if any(call.method in {"eth_subscribe", "eth_unsubscribe"} for call in calls):
                replies = [await self._one(item) for item in parsed.items]
                replies_out = [r for r in replies if r is not None]
            else:
                replies_out = await self.service.run(parsed, self.caller, transport="ws")
        except RateLimiterUnavailable as error:  # fail-closed limits: each call refused, said why
            replies_out = [
                jsonrpc.error_bytes(call.id, error.rpc_code, error.message, {"code": error.code})
                for call in calls
                if not call.notification
            ]
        if replies_out:
            self.deliver(jsonrpc.batch_bytes(replies_out) if parsed.batch else replies_out[0])

    async def _one(self, item: Call | jsonrpc.Invalid) -> bytes | None:
        if isinstance(item, jsonrpc.Invalid):
            return jsonrpc.error_bytes(item.id, item.code, item.message)
        wait = await self.service.admit_one(item, self.caller)
        if wait > 0:
            return jsonrpc.error_bytes(
                item.id,
                jsonrpc.LIMIT_EXCEEDED,
                "rate limit exceeded",
                {"retryAfterSeconds": round(wait, 3)},
            )
        if item.method == "eth_subscribe":
            reply = await self._subscribe(item)
        elif item.method == "eth_unsubscribe":
            reply = self._unsubscribe(item)
        else:
            reply = await self.service.execute(item, self.caller, transport="ws")
        return None if item.notification else reply

    async def _subscribe(self, call: Call) -> bytes:
        denied = self.service.policies[self.caller.tier].check("eth_subscribe")
        if denied is not None:
            return jsonrpc.error_bytes(call.id, jsonrpc.METHOD_NOT_FOUND, denied)
        params = call.params if isinstance(call.params, list) else []
        if not params or params[0] not in SUPPORTED:
            return jsonrpc.error_bytes(
                call.id,
                jsonrpc.INVALID_PARAMS,
                f"subscription type must be one of {', '.join(sorted(SUPPORTED))}",
            )
        if len(self.subscriptions) >= self.max_subscriptions:
            return jsonrpc.error_bytes(
                call.id,
                jsonrpc.LIMIT_EXCEEDED,
                f"at most {self.max_subscriptions} subscriptions per connection",
            )
        try:
            subscription = await self.hub.subscribe(str(params[0]), list(params[1:]), self.deliver)
        except (SubscriptionRefused, SubscriptionUnavailable, TooManyFeeds) as error:
            return jsonrpc.error_bytes(call.id, error.rpc_code, error.message)
        self.subscriptions.add(subscription)
        return jsonrpc.result_bytes(call.id, subscription)

    def _unsubscribe(self, call: Call) -> bytes:
        params = call.params if isinstance(call.params, list) else []
        subscription = params[0] if params else None
        found = isinstance(subscription, str) and subscription in self.subscriptions
        if found:
            self.subscriptions.discard(str(subscription))
            self.hub.unsubscribe(str(subscription))
        return jsonrpc.result_bytes(call.id, found)

    def close(self) -> None:
        for subscription in list(self.subscriptions):
            self.hub.unsubscribe(subscription)
        self.subscriptions.clear()


class ConnectionCounter:
    """Open connections per caller key, to cap them."""

    def __init__(self) -> None:
        self.open: Counter[str] = Counter()

    def acquire(self, key: str, limit: int) -> bool:
        if self.open[key] >= limit:
            return False
        self.open[key] += 1
        return True

    def release(self, key: str) -> None:
        self.open[key] -= 1
        if self.open[key] <= 0:
            del self.open[key]


@dataclass(frozen=True, slots=True)
class WebSocketGateway:
    """What every WebSocket connection of an app shares."""

    service: RpcService
    hub: SubscriptionHub
    counter: ConnectionCounter
    metrics: Metrics

    async def serve(self, request: web.Request, caller: Caller) -> web.StreamResponse:
        settings = self.service.settings
        if not self.counter.acquire(caller.key, settings.ws_max_connections_per_caller):
            raise RateLimited("too many WebSocket connections for this caller", retry_after_s=5)
        try:
            # A message is held to the same cap as an HTTP body (over it: close 1009).
            limit = request.app[SETTINGS].server.max_body_bytes
            ws = web.WebSocketResponse(heartbeat=settings.ws_heartbeat_s, max_msg_size=limit)
            set_request_id(request, ws)
            await ws.prepare(request)
            await self._converse(ws, caller)
        finally:
            self.counter.release(caller.key)
        return ws

    async def _converse(self, ws: web.WebSocketResponse, caller: Caller) -> None:
        connection = Connection(ws, caller, self)
        self.metrics.ws_connections.inc()
        writer = asyncio.create_task(connection.writer(), name="ws-writer")
        try:
            async for message in ws:
                if message.type in {WSMsgType.TEXT, WSMsgType.BINARY}:
                    await connection.handle(message.data)
                elif message.type == WSMsgType.ERROR:
                    break
        finally:
            connection.close()
            self.metrics.ws_connections.dec()
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                await writer
