"""Executing JSON-RPC calls: policy, limits, cache, eth_getLogs chunks, the pool, the tip.

Transport-independent: the HTTP handler and the WebSocket session both call ``execute``.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson
import structlog
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import INVALID_SPAN, SpanKind

from gateway.caller import Caller, Tier
from gateway.config import RpcSettings
from gateway.errors import GatewayError
from gateway.ratelimit import Limit, MemoryRateLimiter, RateLimiter
from gateway.rpc import jsonrpc, logs
from gateway.rpc.cache import (
    FOREVER,
    MemoryCache,
    RedisCache,
    Rule,
    cache_key,
    cache_rule,
    result_height,
)
from gateway.rpc.coalesce import COALESCIBLE, Coalescer
from gateway.rpc.consensus import Consensus, ConsensusDispute
from gateway.rpc.explain import Explain
from gateway.rpc.jsonrpc import Call, Invalid, Parsed
from gateway.rpc.policy import DENIED_CODE, MethodPolicy
from gateway.rpc.pool import UpstreamPool
from gateway.rpc.upstream import Upstream, decode_reply
from gateway.telemetry import Metrics, is_sampled

log = structlog.get_logger("gateway.rpc")

_LATEST_METHODS = {
    "eth_blockNumber",
    "eth_call",
    "eth_getBalance",
    "eth_getCode",
    "eth_getTransactionCount",
    "eth_getStorageAt",
    "eth_getStorageValues",
    "eth_estimateGas",
    "eth_getBlockByNumber",
    "eth_getLogs",
}
WS_ONLY = frozenset({"eth_subscribe", "eth_unsubscribe"})
# Lookups a node behind the others answers null for what they have: asked again further on.
_LOOKUPS = frozenset(
    {
        "eth_getTransactionReceipt",
        "eth_getTransactionByHash",
        "eth_getBlockByHash",
        "eth_getBlockByNumber",
        "eth_getBlockReceipts",
        "eth_getTransactionByBlockHashAndIndex",
        "eth_getTransactionByBlockNumberAndIndex",
        "eth_getBlockTransactionCountByHash",
        "eth_getBlockTransactionCountByNumber",
    }
)


class RpcService:
    def __init__(  # noqa: PLR0913  # the collaborators of a call
        self,
        settings: RpcSettings,
        *,
        pool: UpstreamPool,
        cache: MemoryCache | None,
        limiter: RateLimiter,
        metrics: Metrics,
        tracer: trace.Tracer,
        shared_cache: RedisCache | None = None,
        limit_scope: str = "",
    ) -> None:
        self.settings = settings
        # Rate-limit keys: one budget per caller across networks, unless a network has
        # limits of its own (its label then scopes them).
        self._limit_prefix = f"rpc:{limit_scope}:" if limit_scope else "rpc:"
        self.pool = pool
        self.cache = cache
        self.shared: RedisCache | None = shared_cache
        self.limiter = limiter
        self._local_limiter = limiter if isinstance(limiter, MemoryRateLimiter) else None
        self.metrics = metrics
        self.tracer = tracer
        self.policies: dict[Tier, MethodPolicy] = {
            "anonymous": MethodPolicy(settings.anonymous.allow, settings.anonymous.deny),
            "signed_in": MethodPolicy(settings.signed_in.allow, settings.signed_in.deny),
        }
        self.limits: dict[Tier, Limit] = {
            "anonymous": Limit(settings.anonymous.rate_per_s, settings.anonymous.burst),
            "signed_in": Limit(settings.signed_in.rate_per_s, settings.signed_in.burst),
        }
        self.known_methods = frozenset(
            name
            for tier in (settings.anonymous, settings.signed_in)
            for name in tier.allow
            if not name.endswith("*")
        )
        self._logs_slots = asyncio.Semaphore(settings.logs_concurrency)
        # A cache hit's two counters, by method and tier: one lookup on the lane's path.
        self._hit_counters: dict[tuple[str, Tier], tuple[Any, Any]] = {}
        self.coalescer: Coalescer[tuple[bytes, dict[str, Any], Upstream]] | None = (
            Coalescer() if settings.coalesce else None
        )
        self.consensus = (
            Consensus(settings.consensus, pool, metrics, tracer)
            if settings.consensus.rules
            else None
        )

    def method_label(self, method: str) -> str:
        return method if method in self.known_methods else "other"

    def weight(self, method: str) -> float:
        return self.settings.method_weights.get(method, 1.0)

    # --- a whole request ------------------------------------------------------------

    async def admit(self, calls: list[Call], caller: Caller) -> list[float]:
        """Rate-limit each call in order: 0.0 when admitted, else seconds to wait."""
        return [await self.admit_one(call, caller) for call in calls]

    async def admit_one(self, call: Call, caller: Caller) -> float:
        if self._local_limiter is not None:  # in process: no coroutine to create and await
            return self.admit_now(call, caller)
        key, limit, cost = (
            self._limit_prefix + caller.key,
            self.limits[caller.tier],
            self.weight(call.method),
        )
        return self._counted_wait(call, caller, await self.limiter.acquire(key, limit, cost))

    def admit_now(self, call: Call, caller: Caller) -> float:
        """``admit_one`` with the limits in process (``answers_now`` says so)."""
        assert self._local_limiter is not None  # noqa: S101  # only when answers_now
        key, limit, cost = (
            self._limit_prefix + caller.key,
            self.limits[caller.tier],
            self.weight(call.method),
        )
        wait = self._local_limiter.acquire_now(key, limit, cost)
        return self._counted_wait(call, caller, wait)

    def _counted_wait(self, call: Call, caller: Caller, wait: float) -> float:
        if wait > 0:
            self.metrics.rate_limited.labels(caller.tier).inc()
            self.metrics.rpc_requests.labels(
                self.method_label(call.method), caller.tier, "rate_limited"
            ).inc()
        return wait

    async def run(
        self,
        parsed: Parsed,
        caller: Caller,
        *,
        transport: str = "http",
        explains: list[Explain] | None = None,
    ) -> list[bytes]:
        """Replies of a parsed request, in order; notifications get none. ``explains``
        gets how each executed call was answered."""
        calls = [item for item in parsed.items if isinstance(item, Call)]
        waits = dict(zip(map(id, calls), await self.admit(calls, caller), strict=True))

        async def one(item: Call | Invalid) -> bytes | None:
            if isinstance(item, Invalid):
                self.metrics.rpc_requests.labels("other", caller.tier, "invalid").inc()
                return jsonrpc.error_bytes(item.id, item.code, item.message)
            if waits[id(item)] > 0:
                reply = jsonrpc.error_bytes(
                    item.id,
                    jsonrpc.LIMIT_EXCEEDED,
                    "rate limit exceeded",
                    {"retryAfterSeconds": round(waits[id(item)], 3)},
                )
            else:
                explain = Explain()
                if explains is not None:
                    explains.append(explain)
                reply = await self.execute(item, caller, transport=transport, explain=explain)
            return None if item.notification else reply

        replies = await asyncio.gather(*(one(item) for item in parsed.items))
        return [reply for reply in replies if reply is not None]

    # --- a cached read, answered at once (the lane) ----------------------------------

    @property
    def answers_now(self) -> bool:
        """Whether a cached read can be answered without awaiting anything: a cache and
        limits in this process."""
        return self.cache is not None and self._local_limiter is not None

    def cached_reply(  # noqa: PLR0911  # one exit per reason a call is not a hit
        self, call: Call, caller: Caller, explain: Explain | None = None
    ) -> bytes | None:
        """The reply the process's cache holds for an allowed call, found with no effect
        on counts or limits; None for anything ``execute`` must answer. ``explain`` is told
        of a hit."""
        method, params = call.method, call.params
        if self.cache is None or method in WS_ONLY or call.notification:
            return None
        if self.policies[caller.tier].check(method) is not None:
            return None
        try:
            if method == "eth_getLogs" and self._logs_plan(params) is not None:
                return None
            rule = cache_rule(method, params, finalized=self.pool.finalized)
            if rule is None:
                return None
            key = cache_key(method, params)
        except GatewayError:  # refused params: execute answers with the error
            return None
        head = self.pool.head_number()
        cached = self.cache.get(key, head=head)
        if cached is None:
            return None
        if explain is not None:
            explain.cache = "hit"
            if rule.height is None:  # a latest read: answered at this head
                explain.block = head
        return _reply_with_result(call.id, cached)

    def count_cached_reply(self, call: Call, caller: Caller) -> None:
        """What ``execute`` records for a cache hit: the counts, and the rpc span."""
        key = (call.method, caller.tier)
        counters = self._hit_counters.get(key)
        if counters is None:
            metrics = self.metrics
            label = self.method_label(call.method)
            counters = (
                metrics.child(metrics.rpc_cache_requests, "hit"),
                metrics.child(metrics.rpc_requests, label, caller.tier, "ok"),
            )
            if label != "other":  # bounded: the allowed methods, two tiers
                self._hit_counters[key] = counters
        counters[0].inc()
        counters[1].inc()
        if is_sampled():
            self.tracer.start_span(
                f"rpc {call.method}",
                kind=SpanKind.INTERNAL,
                attributes={
                    "rpc.system": "jsonrpc",
                    "rpc.method": call.method,
                    "gateway.cache": "hit",
                },
            ).end()

    # --- one call -------------------------------------------------------------------

    async def execute(
        self,
        call: Call,
        caller: Caller,
        *,
        transport: str = "http",
        explain: Explain | None = None,
    ) -> bytes:
        """The reply (bytes, with the call's id) for one admitted call; ``explain`` is
        told how it was answered (cache, node, attempts, the node's time)."""
        explain = explain if explain is not None else Explain()
        label = self.method_label(call.method)
        denied = self.policies[caller.tier].check(call.method)
        if denied is None and call.method in WS_ONLY and transport != "ws":
            denied = f"{call.method} needs a WebSocket connection (GET /rpc with Upgrade)"
        if denied is not None:
            self.metrics.rpc_requests.labels(label, caller.tier, "denied").inc()
            return jsonrpc.error_bytes(call.id, DENIED_CODE, denied)
        if is_sampled():
            span = self.tracer.start_span(
                f"rpc {call.method}",
                kind=SpanKind.INTERNAL,
                attributes={"rpc.system": "jsonrpc", "rpc.method": call.method},
            )
            token = otel_context.attach(trace.set_span_in_context(span))
            try:
                reply, outcome = await self._answer_or_error(call, label, span, explain)
            finally:
                span.end()
                otel_context.detach(token)
        else:
            # An unsampled trace exports nothing: skipping its span changes no output, and
            # the node still gets this trace's traceparent (flag 00).
            reply, outcome = await self._answer_or_error(call, label, INVALID_SPAN, explain)
        self.metrics.child(self.metrics.rpc_requests, label, caller.tier, outcome).inc()
        return reply

    async def _answer_or_error(
        self, call: Call, label: str, span: trace.Span, explain: Explain
    ) -> tuple[bytes, str]:
        try:
            return await self._answer(call, label, span, explain)
        except GatewayError as error:
            span.set_attribute("gateway.error", error.code)
            reply = jsonrpc.error_bytes(call.id, error.rpc_code, error.message, error.data)
            return reply, "invalid" if error.http_status < 500 else "upstream_error"

    async def _answer(
        self, call: Call, label: str, span: trace.Span, explain: Explain
    ) -> tuple[bytes, str]:
        method, params = call.method, call.params
        if method == "eth_getLogs":
            planned = self._logs_plan(params)
            if planned is not None:
                span.set_attribute("gateway.logs_chunks", len(planned.chunks))
                return await self._logs_in_chunks(call, planned, label)
        rule = None
        if self.cache is not None:
            rule = cache_rule(method, params, finalized=self.pool.finalized)
        head = self.pool.head_number()
        coalesce = self.coalescer is not None and method in COALESCIBLE
        key = cache_key(method, params) if rule is not None or coalesce else b""
        if rule is not None:
            if rule.height is None:  # a latest read: answered at this head
                explain.block = head
            cached = await self._cached(key, rule, head, span)
            if cached is not None:  # the stored result's bytes, the caller's id around them
                explain.cache = "hit"
                return _reply_with_result(call.id, cached), "ok"
            explain.cache = "miss"
        reply, decoded, upstream = await self._fetch(
            call, label, span, (key, head), coalesce, explain=explain
        )
        if "error" in decoded:
            return reply, "node_error"
        reply, decoded, upstream = await self._retry_ahead(
            call, label, span, explain, (reply, decoded, upstream)
        )
        result = decoded.get("result")
        if method == "eth_blockNumber":
            reply, result = self._monotonic_tip(call, reply, result)
        if rule is not None and self.cache is not None:
            await self._store(key, rule, result, head)
        span.set_attribute("gateway.upstream", upstream.name)
        return reply, "ok"

    async def _retry_ahead(  # the call and what it got
        self,
        call: Call,
        label: str,
        span: trace.Span,
        explain: Explain,
        answer: tuple[bytes, dict[str, Any], Upstream],
    ) -> tuple[bytes, dict[str, Any], Upstream]:
        """A null lookup from a node behind the others asked again of a node further on
        (it may not have the block yet); the first answer when none has more."""
        answered = answer[2]
        if (
            call.method not in _LOOKUPS
            or answer[1].get("result") is not None
            or self.pool.best_latest() <= answered.head.latest
        ):
            return answer
        metrics = self.metrics
        try:
            found = await self._forward(
                call, label, span, explain, min_head=answered.head.latest + 1, exclude=answered
            )
        except GatewayError:
            found = None
        outcome = "found" if found is not None and found[1].get("result") is not None else "none"
        metrics.child(metrics.rpc_empty_retries, label, outcome).inc()
        span.set_attribute("gateway.empty_retry", outcome)
        return found if found is not None and outcome == "found" else answer

    def _logs_plan(self, params: Any) -> logs.LogsPlan | None:  # noqa: ANN401  # the call's params
        return logs.plan(
            params,
            latest=self.pool.served_tip,
            chunk_blocks=self.settings.logs_chunk_blocks,
            max_range=self.settings.logs_max_range,
        )

    async def _fetch(  # noqa: PLR0913  # a call and how to ask for it
        self,
        call: Call,
        label: str,
        span: trace.Span,
        key: tuple[bytes, int],
        coalesce: bool,
        *,
        explain: Explain,
    ) -> tuple[bytes, dict[str, Any], Upstream]:
        """The node's reply, asked once for identical reads in flight together (same call,
        same head); every caller gets it under its own id."""
        if not coalesce or self.coalescer is None:
            return await self._forward(call, label, span, explain)
        (reply, decoded, upstream), shared = await self.coalescer.run(
            key, lambda: self._forward(call, label, span, explain)
        )
        if shared:
            explain.cache, explain.upstream = "coalesced", upstream.name
            self.metrics.rpc_coalesced.labels(label).inc()
            span.set_attribute("gateway.coalesced", value=True)
            reply = jsonrpc.with_id(reply, decoded, call.id)
        return reply, decoded, upstream

    async def _forward(  # noqa: PLR0913  # the call and where it may go
        self,
        call: Call,
        label: str,
        span: trace.Span,
        explain: Explain,
        *,
        min_head: int | None = None,
        exclude: Upstream | None = None,
    ) -> tuple[bytes, dict[str, Any], Upstream]:
        if min_head is None:
            min_head = self.pool.served_tip if call.method in _LATEST_METHODS else -1

        def on_attempt(upstream: Upstream, attempt: int) -> None:
            explain.attempts = attempt
            span.set_attribute("gateway.attempt", attempt)
            span.set_attribute("gateway.upstream", upstream.name)

        body = (
            call.body()
            if not call.notification
            else jsonrpc.encode_call(Call(call.method, call.params, id=0))
        )  # a notification still needs an answer from the node to know it worked
        rule = None
        if self.consensus is not None and exclude is None:
            rule = self.consensus.rules.for_call(call.method, call.params)
        started = time.perf_counter()
        try:
            if rule is not None and self.consensus is not None:
                try:
                    reply, upstream, verdict = await self.consensus.ask(
                        rule, body, label, min_head=min_head
                    )
                except ConsensusDispute as dispute:
                    explain.consensus = dispute.header
                    raise
                explain.consensus, explain.attempts = verdict.header, verdict.asked
                span.set_attribute("gateway.consensus", verdict.header)
            else:
                reply, upstream = await self.pool.forward(
                    body, method=label, min_head=min_head, attempt_hook=on_attempt, exclude=exclude
                )
        finally:
            explain.node_s = time.perf_counter() - started
        explain.upstream = upstream.name
        decoded = decode_reply(upstream.name, reply)
        return jsonrpc.with_id(reply, decoded, call.id), decoded, upstream

    def _monotonic_tip(self, call: Call, reply: bytes, result: Any) -> tuple[bytes, Any]:  # noqa: ANN401
        """eth_blockNumber never goes backwards, even from a node that lags."""
        number = int(result, 16) if isinstance(result, str) and result.startswith("0x") else -1
        if 0 <= number < self.pool.served_tip:
            result = hex(self.pool.served_tip)
            return jsonrpc.result_bytes(call.id, result), result
        self.pool.observe_tip(number)
        return reply, result

    async def _cached(self, key: bytes, rule: Rule, head: int, span: trace.Span) -> bytes | None:
        """The process's cache first, then (for final answers) the replicas' shared one."""
        assert self.cache is not None  # noqa: S101  # a rule exists only with a cache
        cached = self.cache.get(key, head=head)
        if cached is None and self.shared is not None and self._shareable(rule):
            cached = await self.shared.get(key)
            if cached is not None:  # another replica fetched it: keep it here too
                self.cache.put(key, cached, height=rule.height, head=head)
        result = "hit" if cached is not None else "miss"
        self.metrics.child(self.metrics.rpc_cache_requests, result).inc()
        if span.is_recording():
            span.set_attribute("gateway.cache", result)
        return cached

    def _shareable(self, rule: Rule, height: int | None = None) -> bool:
        """Only answers that are final everywhere go to the shared cache: each replica has
        its own view of the head, so head-scoped answers stay in the process."""
        height = rule.height if height is None else height
        return height == FOREVER or (height is not None and 0 <= height <= self.pool.finalized())

    async def _store(self, key: bytes, rule: Rule, result: Any, head: int) -> None:  # noqa: ANN401
        if self.cache is None or result is None:
            return
        height = rule.height
        if rule.from_result:
            height = result_height(result)
            if height is None:
                return  # pending or unknown: may change
        encoded = orjson.dumps(result)
        self.cache.put(key, encoded, height=height, head=head)
        self.metrics.rpc_cache_bytes.set(self.cache.size)
        if (
            self.shared is not None
            and (height == FOREVER or height is not None)
            and self._shareable(rule, height)
        ):
            await self.shared.put(key, encoded)

    async def _logs_in_chunks(
        self, call: Call, planned: logs.LogsPlan, label: str
    ) -> tuple[bytes, str]:
        last = len(planned.chunks) - 1

        async def chunk(index: int, low: int, high: int) -> dict[str, Any]:
            params = logs.chunk_params(list(call.params), low, high, last=index == last)
            async with self._logs_slots:
                reply, _ = await self._answer(
                    Call("eth_getLogs", params, id=1), label, trace.get_current_span(), Explain()
                )
                decoded: dict[str, Any] = orjson.loads(reply)
                return decoded

        parts = await asyncio.gather(
            *(chunk(index, low, high) for index, (low, high) in enumerate(planned.chunks))
        )
        merged: list[Any] = []
        for part in parts:
            if "error" in part:
                return orjson.dumps(
                    {"jsonrpc": "2.0", "id": call.id, "error": part["error"]}
                ), "node_error"
            merged.extend(part.get("result") or [])
        return jsonrpc.result_bytes(call.id, merged), "ok"


def _reply_with_result(call_id: Any, result: bytes) -> bytes:  # noqa: ANN401
    return orjson.dumps({"jsonrpc": "2.0", "id": call_id, "result": orjson.Fragment(result)})
