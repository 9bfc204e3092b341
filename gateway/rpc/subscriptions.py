"""Subscription fan-out: one upstream subscription per distinct (type, params), shared by
every client that asked for it.

A ``Feed`` holds the upstream WebSocket subscription for one key. When its node goes away it
subscribes again on the next node that has a WebSocket URL; clients keep their ids and
simply receive the next notification. The last client leaving closes the feed.

Without any WebSocket URL, ``newHeads`` and ``logs`` feeds are served by polling (one
``polled.ChainFollower`` for the gateway); ``newPendingTransactions`` needs a pushing node
and is refused with a reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson
import structlog

from gateway.background import cancel
from gateway.errors import GatewayError, InvalidParams, RateLimited, UpstreamError
from gateway.jsonexact import dumps_exact
from gateway.rpc.polled import ChainFollower, LogsWatch
from gateway.rpc.pool import NewHead, UpstreamPool
from gateway.rpc.upstream import decode_reply
from gateway.telemetry import Metrics

log = structlog.get_logger("gateway.rpc.subscriptions")

SUPPORTED = frozenset({"newHeads", "logs", "newPendingTransactions"})

Deliver = Callable[[bytes], bool]  # False: the client cannot keep up (it gets dropped)


class TooManyFeeds(RateLimited):
    """Every upstream subscription slot of the gateway is taken by distinct ones."""

    code = "rpc.too_many_subscriptions"


class SubscriptionUnavailable(GatewayError):
    """A subscription type this gateway's configuration cannot serve (EIP-1474 -32004)."""

    http_status = 422
    rpc_code = -32004
    code = "rpc.subscription_unavailable"


class SubscriptionRefused(InvalidParams):
    """The node refused the subscription itself (its parameters): not a node failure, so it
    is not retried on another node; the client gets the node's reason."""

    code = "rpc.subscription_refused"


def new_subscription_id() -> str:
    return "0x" + os.urandom(16).hex()


@dataclass(slots=True)
class Feed:
    key: bytes
    kind: str
    params: list[Any]
    clients: dict[str, Deliver] = field(default_factory=dict)
    task: asyncio.Task[None] | None = None
    upstream: str = ""
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    refused: SubscriptionRefused | None = None
    polled: bool = False  # served by the ChainFollower (no WebSocket node)


class SubscriptionHub:
    def __init__(  # noqa: PLR0913  # the pool, a session, metrics and three tunables
        self,
        pool: UpstreamPool,
        session: aiohttp.ClientSession,
        metrics: Metrics,
        *,
        retry_s: float = 0.5,
        ready_timeout_s: float = 5.0,
        max_feeds: int = 1000,
        poll_s: float = 1.0,
    ) -> None:
        self.pool = pool
        self.session = session
        self.metrics = metrics
        self.retry_s = retry_s
        self.ready_timeout_s = ready_timeout_s
        self.max_feeds = max_feeds
        self.feeds: dict[bytes, Feed] = {}
        self._by_client: dict[str, Feed] = {}
        self._internal: set[str] = set()
        self.follower = ChainFollower(self._pool_call, poll_s=poll_s, on_block=pool.observe_tip)
        self._follower_task: asyncio.Task[None] | None = None
        pool.on_head(self._on_pool_head)

    def clients(self, feed: Feed) -> list[str]:
        """The client subscriptions on ``feed`` (the gateway's own left out)."""
        return [subscription for subscription in feed.clients if subscription not in self._internal]

    def client_feeds(self) -> list[Feed]:
        """The feeds that at least one client subscription is on."""
        return [feed for feed in self.feeds.values() if self.clients(feed)]

    def has_websocket_upstream(self) -> bool:
        return any(u.settings.ws_url for u in self.pool.upstreams if u.chain_ok)

    async def subscribe(
        self, kind: str, params: list[Any], deliver: Deliver, *, internal: bool = False
    ) -> str:
        """A client subscription id; returns once the upstream subscription is live (or after
        ``ready_timeout_s``, the feed still trying), so no event after it is missed.
        ``internal``: the gateway's own (not counted as a client's)."""
        key = kind.encode() + b"|" + dumps_exact(params, sort_keys=True)
        feed = self.feeds.get(key)
        if feed is None:
            if len(self.feeds) >= self.max_feeds:
                raise TooManyFeeds(
                    f"the gateway holds {self.max_feeds} distinct subscriptions; share one "
                    "(same type and filter) or try later",
                    retry_after_s=30,
                )
            feed = Feed(key, kind, params)
            if self.has_websocket_upstream():
                feed.task = asyncio.create_task(self._run(feed), name=f"feed-{kind}")
            else:
                self._follow(feed)
            self.feeds[key] = feed
        subscription = new_subscription_id()
        feed.clients[subscription] = deliver
        self._by_client[subscription] = feed
        if internal:
            self._internal.add(subscription)
        else:
            self.metrics.ws_subscriptions.labels(kind).inc()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.ready_timeout_s):
                await feed.ready.wait()
                if feed.polled:
                    await self.follower.started.wait()
        if feed.refused is not None:
            self.unsubscribe(subscription)
            raise feed.refused
        return subscription

    def unsubscribe(self, subscription: str) -> bool:
        feed = self._by_client.pop(subscription, None)
        if feed is None:
            return False
        feed.clients.pop(subscription, None)
        if subscription in self._internal:
            self._internal.discard(subscription)
        else:
            self.metrics.ws_subscriptions.labels(feed.kind).dec()
        if not feed.clients:
            self.feeds.pop(feed.key, None)
            if feed.task is not None:
                feed.task.cancel()
            if feed.polled:
                self._unfollow(feed)
        return True

    async def close(self) -> None:
        tasks = [feed.task for feed in self.feeds.values() if feed.task is not None]
        await cancel(*tasks, *([self._follower_task] if self._follower_task else []))

    # --- polled feeds (no WebSocket node) -------------------------------------------

    def _follow(self, feed: Feed) -> None:
        """Serve ``feed`` from the follower: raises when polling cannot serve its kind."""
        if feed.kind == "newPendingTransactions":
            raise SubscriptionUnavailable(
                "newPendingTransactions needs an upstream node with a WebSocket URL "
                "(GATEWAY_UPSTREAMS=http://node|ws://node); this gateway's nodes are HTTP only"
            )

        def emit(result: bytes) -> None:
            self._fan_out(feed, result)

        if feed.kind == "logs":
            criteria = feed.params[0] if feed.params else {}
            if not isinstance(criteria, dict) or len(feed.params) > 1:
                raise SubscriptionRefused("logs takes one filter object (address, topics)")
            self.follower.logs[feed.key] = LogsWatch(criteria, emit)
        else:
            self.follower.heads[feed.key] = emit
        feed.polled = True
        feed.ready.set()
        if self._follower_task is None or self._follower_task.done():
            self._follower_task = asyncio.create_task(self.follower.run(), name="feed-poller")

    def _unfollow(self, feed: Feed) -> None:
        self.follower.logs.pop(feed.key, None)
        self.follower.heads.pop(feed.key, None)
        if self.follower.idle and self._follower_task is not None:
            self._follower_task.cancel()
            self._follower_task = None
            self.follower.restart()

    def _on_pool_head(self, _head: NewHead) -> None:
        if not self.follower.idle:
            self.follower.wake()

    async def _pool_call(self, method: str, params: list[Any]) -> Any:  # noqa: ANN401  # JSON
        body = dumps_exact({"jsonrpc": "2.0", "id": 1, "method": method, "params": params})
        reply, upstream = await self.pool.forward(body, method=method)
        decoded = decode_reply(upstream.name, reply)
        if "error" in decoded:
            raise UpstreamError(detail=f"{upstream.name}: {method} failed: {decoded['error']}")
        return decoded.get("result")

    def _fan_out(self, feed: Feed, result: bytes) -> None:
        fragment = orjson.Fragment(result)
        dropped = []
        for subscription, deliver in list(feed.clients.items()):
            message = orjson.dumps(
                {
                    "jsonrpc": "2.0",
                    "method": "eth_subscription",
                    "params": {"subscription": subscription, "result": fragment},
                }
            )
            if not deliver(message):
                dropped.append(subscription)
        for subscription in dropped:
            self.unsubscribe(subscription)

    async def _run(self, feed: Feed) -> None:
        """Keep one upstream subscription alive for ``feed``, moving between nodes."""
        while feed.clients:
            for upstream in self.pool.candidates():
                ws_url = upstream.settings.ws_url
                if not ws_url:
                    continue
                try:
                    await self._stream(feed, ws_url)
                except SubscriptionRefused as refused:
                    log.info("subscription refused", kind=feed.kind, detail=refused.message)
                    feed.refused = refused
                    feed.ready.set()  # wakes the subscribers, who get the refusal
                    for subscription in list(feed.clients):
                        self.unsubscribe(subscription)
                    return
                except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as exc:
                    log.warning(
                        "subscription upstream lost",
                        upstream=upstream.name,
                        kind=feed.kind,
                        error=str(exc),
                    )
                    self.metrics.rpc_failovers.labels(upstream.name).inc()
                    continue
            await asyncio.sleep(self.retry_s)

    async def _stream(self, feed: Feed, ws_url: str) -> None:
        async with self.session.ws_connect(ws_url, heartbeat=15, max_msg_size=16 * 2**20) as ws:
            await ws.send_bytes(
                dumps_exact(
                    {
                        "jsonrpc": "2.0",
                        "id": 1,
                        "method": "eth_subscribe",
                        "params": [feed.kind, *feed.params],
                    }
                )
            )
            upstream_id: str | None = None
            async for message in ws:
                if message.type not in {aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY}:
                    break
                data = orjson.loads(message.data)
                if upstream_id is None:
                    if data.get("id") == 1:
                        if "error" in data:
                            raise _refusal(data["error"])
                        upstream_id = data.get("result")
                        feed.upstream = ws_url
                        feed.ready.set()
                    continue
                params = data.get("params") or {}
                if (
                    data.get("method") == "eth_subscription"
                    and params.get("subscription") == upstream_id
                ):
                    if feed.kind == "newHeads":
                        self._note_head(params.get("result"))
                    self._fan_out(feed, orjson.dumps(params.get("result")))
                    await asyncio.sleep(0)  # let the writers drain between notifications
            feed.ready.clear()
            raise aiohttp.ClientConnectionError("upstream WebSocket closed")

    def _note_head(self, header: Any) -> None:  # noqa: ANN401
        if isinstance(header, dict) and isinstance(header.get("number"), str):
            self.pool.observe_tip(int(header["number"], 16))


def _refusal(error: Any) -> SubscriptionRefused:  # noqa: ANN401  # the node's error object
    message = error.get("message") if isinstance(error, dict) else None
    return SubscriptionRefused(f"the node refused the subscription: {message or error}"[:300])
