"""The upstream pool: which node answers, failover, head tracking and the served tip.

- Routing: healthy nodes on the right chain whose breaker allows, not lagging more than
  ``max_lag_blocks`` behind the best head, in weighted random order.
- Failover: a failed idempotent read moves to the next node, at most ``max_attempts``
  nodes. ``eth_sendRawTransaction`` goes to every healthy node at once (``broadcast``):
  the first that takes it answers, and a node that already has it ("already known",
  "nonce too low" with the transaction there) counts as taking it.
- Heads: every ``health_interval_s`` each node reports latest/safe/finalized. The best
  head is checked against the chain the pool knows (the last ``REORG_DEPTH`` canonical
  hashes), however far it moved: the pool walks back by parent hash, on the node that
  reported it, to the common ancestor; a known block the new head does not descend from
  is a reorg from that height, and the pool's listeners hear of both.
- The served tip never goes backwards: ``latest`` reads go to nodes at or past the highest
  block the gateway has answered with.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson
import structlog
from eth_hash.auto import keccak

from gateway.background import cancel
from gateway.config import RpcSettings
from gateway.errors import UpstreamError
from gateway.rpc.upstream import Breaker, Upstream, UpstreamFailed, decode_reply
from gateway.telemetry import Metrics

log = structlog.get_logger("gateway.rpc.pool")

_BREAKER_NAMES = {Breaker.CLOSED: "closed", Breaker.HALF_OPEN: "half_open", Breaker.OPEN: "open"}
NON_IDEMPOTENT = frozenset({"eth_sendRawTransaction", "eth_sendTransaction"})
REORG_DEPTH = 64  # canonical hashes remembered; a reorg deeper than this drops them all
# What a node says of a transaction it may already have (geth, reth, erigon, anvil wordings).
_ALREADY_THERE = (
    "already known",
    "nonce too low",
    "already imported",
    "replacement transaction underpriced",
    "known transaction",
)


@dataclass(frozen=True, slots=True)
class NewHead:
    number: int
    hash: str
    parent_hash: str
    reorg_from: int | None  # the first height whose block changed, on a reorg
    block: dict[str, Any]


HeadListener = Callable[[NewHead], Awaitable[None] | None]
_HeadOf = tuple[dict[str, Any], "Upstream"]  # a node's latest block, and the node


class NoUpstream(UpstreamError):
    http_status = 503
    code = "upstream.unavailable"
    default_message = "no upstream node is available"


def _hex(value: Any) -> int:  # noqa: ANN401  # a JSON quantity
    return int(value, 16) if isinstance(value, str) else -1


class UpstreamPool:
    def __init__(
        self,
        upstreams: list[Upstream],
        settings: RpcSettings,
        *,
        chain_id: int | None,
        metrics: Metrics,
    ) -> None:
        self.upstreams = upstreams
        self.settings = settings
        self.chain_id = chain_id
        self.metrics = metrics
        self.served_tip = -1
        self.head: NewHead | None = None  # the best head across nodes
        self.believed_latest = -1  # the highest head that is not a rogue's (_believed)
        self._chain: OrderedDict[int, str] = OrderedDict()  # number -> canonical hash
        self._listeners: list[HeadListener] = []
        self._task: asyncio.Task[None] | None = None
        # One head read at a time: two interleaved reads could make an older head look
        # like a reorg.
        self._poll_lock = asyncio.Lock()
        self._refresh: asyncio.Task[None] | None = None
        self._refresh_again = False
        self._broadcasts: set[asyncio.Future[tuple[str, bytes | UpstreamError]]] = set()
        for upstream in upstreams:  # every series exists from the start, at zero
            metrics.upstream_up.labels(upstream.name).set(0)
            metrics.upstream_breaker_state.labels(upstream.name).set(Breaker.CLOSED)
            metrics.upstream_lag_blocks.labels(upstream.name).set(0)
            metrics.rpc_failovers.labels(upstream.name)
            metrics.rpc_hedges.labels(upstream.name)

    # --- lifecycle ------------------------------------------------------------------

    async def start(self) -> None:
        """Check every node's chain id (a node on another chain is refused for good), take a
        first head reading, then keep polling in the background."""
        await asyncio.gather(*(self._admit(upstream) for upstream in self.upstreams))
        await self.poll_heads()
        self._task = asyncio.create_task(self._poll_forever(), name="upstream-heads")

    async def stop(self) -> None:
        tasks = [task for task in (self._task, self._refresh) if task is not None]
        tasks += [task for task in self._broadcasts if isinstance(task, asyncio.Task)]
        await cancel(*tasks)

    async def _admit(self, upstream: Upstream) -> None:
        try:
            actual = await upstream.chain_id(timeout_s=self.settings.health_timeout_s)
        except UpstreamError as exc:
            log.warning("upstream unreachable at start", upstream=upstream.name, detail=exc.detail)
            return
        if self.chain_id is not None and actual != self.chain_id:
            upstream.chain_ok = False
            log.error(
                "upstream refused: wrong chain",
                upstream=upstream.name,
                chain_id=actual,
                expected=self.chain_id,
            )
            return
        if self.chain_id is None:
            self.chain_id = actual

    def on_head(self, listener: HeadListener) -> None:
        self._listeners.append(listener)

    # --- heads ----------------------------------------------------------------------

    async def _poll_forever(self) -> None:
        while True:
            await asyncio.sleep(self.settings.health_interval_s)
            try:
                await self.poll_heads()
            except Exception:  # the poller must outlive any one failure
                log.exception("head poll failed")

    async def poll_heads(self) -> None:
        async with self._poll_lock:
            candidates = [u for u in self.upstreams if u.chain_ok]
            blocks = await asyncio.gather(*(self._read_head(u) for u in candidates))
            read = [(b, u) for b, u in zip(blocks, candidates, strict=True) if b is not None]
            best = self._believed([(_hex(b["number"]), (b, u)) for b, u in read])
            self._update_lag()
            if best is not None:
                await self._advance(*best)

    def _believed(self, heads: list[tuple[int, _HeadOf]]) -> _HeadOf | None:
        """The highest head that is not a rogue's: with two nodes or more, a head more than
        ``rogue_head_blocks`` past every other node's is not believed (until another node
        comes near it), so one node's rogue or runaway head neither moves the served tip
        nor makes the others look behind. A lone node is believed."""
        ordered = sorted(heads, key=lambda pair: -pair[0])
        lead = self.settings.rogue_head_blocks
        for index, (number, head) in enumerate(ordered):
            others = [other for i, (other, _) in enumerate(ordered) if i != index]
            if not others or number <= max(others) + lead:
                self.believed_latest = number
                return head
        self.believed_latest = -1
        return None

    def refresh_heads_soon(self) -> None:
        """A node announced a block: read the heads now rather than at the next poll. Reads
        do not pile up: announcements during a read make one more read after it."""
        if self._refresh is not None and not self._refresh.done():
            self._refresh_again = True
            return
        self._refresh = asyncio.create_task(self._refresh_heads(), name="upstream-heads-push")

    async def _refresh_heads(self) -> None:
        while True:
            self._refresh_again = False
            try:
                await self.poll_heads()
            except Exception:  # the next announcement or poll tries again
                log.exception("head refresh failed")
            if not self._refresh_again:
                return

    async def _read_head(self, upstream: Upstream) -> dict[str, Any] | None:
        try:
            latest, safe, finalized = await upstream.batch(
                [
                    ("eth_getBlockByNumber", ["latest", False]),
                    ("eth_getBlockByNumber", ["safe", False]),
                    ("eth_getBlockByNumber", ["finalized", False]),
                ],
                timeout_s=self.settings.health_timeout_s,
            )
        except UpstreamError as exc:
            self._set_health(upstream, healthy=False, detail=exc.detail or exc.message)
            return None
        if not isinstance(latest, dict):
            self._set_health(upstream, healthy=False, detail="no latest block")
            return None
        head = upstream.head
        head.latest = _hex(latest.get("number"))
        head.latest_hash = str(latest.get("hash"))
        head.parent_hash = str(latest.get("parentHash"))
        head.safe = _hex(safe.get("number")) if isinstance(safe, dict) else -1
        head.finalized = _hex(finalized.get("number")) if isinstance(finalized, dict) else -1
        head.updated_at = time.monotonic()
        self._set_health(upstream, healthy=True)
        labels = self.metrics.upstream_head_block
        labels.labels(upstream.name, "latest").set(head.latest)
        labels.labels(upstream.name, "safe").set(head.safe)
        labels.labels(upstream.name, "finalized").set(head.finalized)
        return latest

    def _set_health(self, upstream: Upstream, *, healthy: bool, detail: str = "") -> None:
        if upstream.healthy != healthy:  # losing a node is a warning; gaining one is not
            (log.info if healthy else log.warning)(
                "upstream health changed", upstream=upstream.name, healthy=healthy, detail=detail
            )
        upstream.healthy = healthy
        self.metrics.upstream_up.labels(upstream.name).set(1 if healthy else 0)

    def best_latest(self) -> int:
        """The highest head nodes agree on (see ``_believed``); -1 before any is known."""
        return self.believed_latest

    def head_number(self) -> int:
        """The best head's number; -1 before any head is known."""
        return self.head.number if self.head is not None else -1

    def finalized(self) -> int:
        """The highest block every healthy node calls finalized (safe to cache below)."""
        heads = [u.head.finalized for u in self.upstreams if u.healthy and u.chain_ok]
        return max(heads) if heads else -1

    def _update_lag(self) -> None:
        best = self.best_latest()
        for upstream in self.upstreams:
            if upstream.healthy and best >= 0:
                self.metrics.upstream_lag_blocks.labels(upstream.name).set(
                    best - upstream.head.latest
                )

    def lagging(self, upstream: Upstream, best: int | None = None) -> bool:
        best = self.best_latest() if best is None else best
        return best >= 0 and upstream.head.latest < best - self.settings.max_lag_blocks

    async def _advance(self, block: dict[str, Any], source: Upstream) -> None:
        number, block_hash = _hex(block.get("number")), str(block.get("hash"))
        parent = str(block.get("parentHash"))
        previous = self.head
        if previous is not None and previous.hash == block_hash:
            return
        try:
            reorg_from = await self._fork_point(number, block_hash, parent, source)
        except UpstreamError as exc:  # the ancestry is unknown: try again at the next poll
            log.warning("head ancestry unknown", upstream=source.name, detail=exc.detail)
            return
        self.head = NewHead(number, block_hash, parent, reorg_from, block)
        if reorg_from is not None:
            log.warning("reorg", from_block=reorg_from, new_head=number, hash=block_hash)
            # The tip we served is gone; a shorter canonical chain is the truth now.
            self.served_tip = min(self.served_tip, number)
        self.observe_tip(number)
        for listener in self._listeners:
            outcome = listener(self.head)
            if outcome is not None:
                await outcome

    async def _fork_point(
        self, number: int, block_hash: str, parent: str, source: Upstream
    ) -> int | None:
        """The lowest known height whose block the new head does not descend from (None
        when it extends or is on the known chain); the known chain becomes the head's.

        Walks back from the head by parent hash on ``source`` (blocks of another branch
        may be unknown to other nodes) until a known hash is the parent: one call per
        block between the known tip and the head, none in the common case of one block.
        """
        known = self._chain.get(number)
        if known == block_hash:  # a head we know (a lagging node's): nothing changed
            return None
        branch = {number: block_hash}
        below = await self._walk_back(number, parent, source, branch)
        fork = below if below is not None else (number if known is not None else None)
        chain = self._chain
        if fork is not None:
            for height in [h for h in chain if h >= fork]:
                del chain[height]
        for height in sorted(branch):
            chain[height] = branch[height]
            chain.move_to_end(height)
        while len(chain) > REORG_DEPTH:
            chain.popitem(last=False)
        return fork

    async def _walk_back(
        self, number: int, parent: str, source: Upstream, branch: dict[int, str]
    ) -> int | None:
        """The lowest known height below ``number`` that the new branch replaces, if any;
        ``branch`` gets the new branch's hashes down to the common ancestor."""
        chain = self._chain
        lowest = next(iter(chain), number)
        tip = next(reversed(chain), number)
        cursor, cursor_parent = number, parent
        if cursor - tip > REORG_DEPTH:  # far ahead: the blocks in between cannot be cached
            above = await self._block(source, "eth_getBlockByNumber", hex(tip + 1))
            cursor, cursor_parent = tip + 1, str(above.get("parentHash"))
            branch[cursor] = str(above.get("hash"))
        fork: int | None = None
        while cursor - 1 >= lowest:
            height = cursor - 1
            known = chain.get(height)
            if known == cursor_parent:
                break  # the common ancestor
            if known is not None:
                fork = height
            if height == lowest:  # deeper than the pool remembers: all of it is gone
                break
            ancestor = await self._block(source, "eth_getBlockByHash", cursor_parent)
            branch[height] = cursor_parent
            cursor, cursor_parent = height, str(ancestor.get("parentHash"))
        return fork

    async def _block(self, source: Upstream, method: str, ref: str) -> dict[str, Any]:
        block = await source.call(method, [ref, False], timeout_s=self.settings.health_timeout_s)
        if not isinstance(block, dict):
            raise UpstreamError(detail=f"{source.name}: {method}({ref}) found no block")
        return block

    def observe_tip(self, number: int) -> None:
        self.served_tip = max(self.served_tip, number)

    # --- routing --------------------------------------------------------------------

    def candidates(self, *, min_head: int = -1) -> list[Upstream]:
        """Nodes to try, best first: weighted random among the fit ones; then, as a last
        resort, nodes that are up but lag or sit behind ``min_head``."""
        now = time.monotonic()
        best = self.best_latest()
        fit, behind = [], []
        for upstream in self.upstreams:
            if not upstream.chain_ok or not upstream.healthy:
                continue
            latest = upstream.head.latest
            rogue = 0 <= best < latest - self.settings.rogue_head_blocks  # not believed
            sidelined = upstream.sidelined_until > now
            if rogue or sidelined or self.lagging(upstream, best) or latest < min_head:
                behind.append(upstream)
            else:
                fit.append(upstream)
        if len(fit) > 1:
            fit = _weighted_order(fit)
        ordered = fit + sorted(behind, key=lambda u: -u.head.latest) if behind else fit
        # Last resort: a node down now but that has reported a head (never one that has not).
        return [u for u in ordered if u.breaker.allows(now)] or [
            u
            for u in self.upstreams
            if u.chain_ok and u.head.updated_at > 0 and u.breaker.allows(now)
        ]

    def participants(self, count: int, *, min_head: int = -1) -> list[Upstream]:
        """Up to ``count`` nodes for a consensus call: as ``candidates``, without the
        sidelined ones (a node punished for disagreeing does not vote again)."""
        now = time.monotonic()
        return [u for u in self.candidates(min_head=min_head) if u.sidelined_until <= now][:count]

    def sideline(self, upstream: Upstream, seconds: float) -> None:
        upstream.sidelined_until = time.monotonic() + seconds
        log.warning("upstream sidelined", upstream=upstream.name, seconds=seconds)

    async def ask(self, upstream: Upstream, body: bytes, method: str) -> bytes:
        """One attempt at one node (counted, and told to its breaker); no failover."""
        return await self._attempt(upstream, body, method)

    def record(self, upstream: Upstream, *, ok: bool) -> None:
        now = time.monotonic()
        change = upstream.breaker.success() if ok else upstream.breaker.failure(now)
        if change is not None:
            log.warning(
                "breaker state changed", upstream=upstream.name, state=_BREAKER_NAMES[change]
            )
            self.metrics.upstream_breaker_state.labels(upstream.name).set(change)

    async def forward(
        self,
        body: bytes,
        *,
        method: str,
        min_head: int = -1,
        attempt_hook: Callable[[Upstream, int], None] | None = None,
        exclude: Upstream | None = None,
    ) -> tuple[bytes, Upstream]:
        """Send ``body`` to the first node that answers; fail over per the rules above.
        ``exclude``: a node not to ask (one that answered this call already)."""
        if method == "eth_sendRawTransaction":
            return await self.broadcast(body)
        idempotent = method not in NON_IDEMPOTENT
        candidates = [u for u in self.candidates(min_head=min_head) if u is not exclude]
        if exclude is not None and candidates and candidates[0].head.latest < min_head:
            raise NoUpstream(detail="no other node is at that block")
        candidates = candidates[: self.settings.max_attempts]
        last_error: UpstreamError | None = None
        for tried, upstream in enumerate(candidates, start=1):
            if attempt_hook is not None:
                attempt_hook(upstream, tried)
            try:
                if idempotent and self.settings.hedge_reads and tried < len(candidates):
                    return await self._hedged(upstream, candidates[tried], body, method)
                return await self._attempt(upstream, body, method), upstream
            except UpstreamError as exc:
                last_error = exc
                if not idempotent and exc.received:
                    break  # the node may have the transaction: never send it twice
                log.warning("failover", upstream=upstream.name, method=method, detail=exc.detail)
                self.metrics.rpc_failovers.labels(upstream.name).inc()
        if last_error is not None:
            raise last_error
        raise NoUpstream

    async def broadcast(self, body: bytes) -> tuple[bytes, Upstream]:
        """An ``eth_sendRawTransaction`` to every healthy node on the chain in parallel;
        the first that takes it (or already has it) answers, the others go on in the
        background. When none takes it, a node's refusal is the answer; when none is
        reachable, the last error is raised."""
        now = time.monotonic()
        targets = [
            u for u in self.upstreams if u.chain_ok and u.healthy and u.breaker.allows(now)
        ] or [u for u in self.upstreams if u.chain_ok and u.breaker.allows(now)]
        if not targets:
            raise NoUpstream
        try:
            request = orjson.loads(body)
            raw = request["params"][0]
            tx_hash = "0x" + keccak(bytes.fromhex(raw.removeprefix("0x"))).hex()
        except (ValueError, KeyError, IndexError, TypeError):  # not a raw transaction: as is
            return await self._attempt(targets[0], body, "eth_sendRawTransaction"), targets[0]
        if len(targets) == 1:  # one node: asked in this task, as any call
            _, reply = await self._send_to(targets[0], body, tx_hash, request.get("id"))
            if isinstance(reply, UpstreamError):
                raise reply
            return reply, targets[0]
        return await self._to_all(targets, body, tx_hash, request.get("id"))

    async def _to_all(
        self,
        targets: list[Upstream],
        body: bytes,
        tx_hash: str,
        call_id: Any,  # noqa: ANN401  # JSON
    ) -> tuple[bytes, Upstream]:
        pending = {
            asyncio.ensure_future(self._send_to(u, body, tx_hash, call_id)): u for u in targets
        }
        refusal: tuple[bytes, Upstream] | None = None
        error: UpstreamError | None = None
        waiting = set(pending)
        while waiting:
            done, waiting = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                outcome, reply = task.result()
                if isinstance(reply, UpstreamError):
                    error = reply
                elif outcome in {"accepted", "known"}:
                    for rest in waiting:  # the others still deliver it, unawaited here
                        self._broadcasts.add(rest)
                        rest.add_done_callback(self._broadcasts.discard)
                    return reply, pending[task]
                elif refusal is None:
                    refusal = reply, pending[task]
        if refusal is not None:
            return refusal
        assert error is not None  # noqa: S101  # every node failed one way or the other
        raise error

    async def _send_to(
        self,
        upstream: Upstream,
        body: bytes,
        tx_hash: str,
        call_id: Any,  # noqa: ANN401  # JSON
    ) -> tuple[str, bytes | UpstreamError]:
        """What one node said of a raw transaction: (outcome, its reply or the error)."""
        try:
            reply = await self._attempt(upstream, body, "eth_sendRawTransaction")
            decoded = decode_reply(upstream.name, reply)
        except UpstreamError as exc:
            self._count_broadcast(upstream, "unreachable")
            return "unreachable", exc
        if "result" in decoded:
            self._count_broadcast(upstream, "accepted")
            return "accepted", reply
        message = str((decoded.get("error") or {}).get("message", "")).lower()
        if any(known in message for known in _ALREADY_THERE):
            try:
                found = await upstream.call(
                    "eth_getTransactionByHash", [tx_hash], timeout_s=self.settings.health_timeout_s
                )
            except UpstreamError:
                found = None
            if isinstance(found, dict):
                self._count_broadcast(upstream, "known")
                return "known", orjson.dumps({"jsonrpc": "2.0", "id": call_id, "result": tx_hash})
        self._count_broadcast(upstream, "rejected")
        return "rejected", reply

    def _count_broadcast(self, upstream: Upstream, outcome: str) -> None:
        metrics = self.metrics
        metrics.child(metrics.rpc_broadcast, upstream.name, outcome).inc()

    async def _attempt(self, upstream: Upstream, body: bytes, method: str) -> bytes:
        upstream.breaker.begin()
        started = time.perf_counter()
        try:
            reply = await upstream.forward(body)
        except UpstreamError:
            self._count(upstream, method, "error", started)
            self.record(upstream, ok=False)
            raise
        self._count(upstream, method, "ok", started)
        self.record(upstream, ok=True)
        return reply

    async def _hedged(
        self, first: Upstream, second: Upstream, body: bytes, method: str
    ) -> tuple[bytes, Upstream]:
        """Ask ``first``; if it has not answered within its p95 latency, ask ``second`` too
        and take whichever answers first. Only for reads: both may see the call. The loser
        is cancelled and awaited before this returns, also when the caller is cancelled:
        no attempt outlives its request."""
        delay = first.p95_s()
        primary = asyncio.create_task(self._attempt(first, body, method))
        owners = {primary: first}
        try:
            if delay is None:
                return await primary, first
            done, _ = await asyncio.wait({primary}, timeout=delay)
            if done:
                return primary.result(), first
            self.metrics.rpc_hedges.labels(second.name).inc()
            backup = asyncio.create_task(self._attempt(second, body, method))
            owners[backup] = second
            pending: set[asyncio.Task[bytes]] = {primary, backup}
            error: UpstreamError | None = None
            while pending:
                finished, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for task in finished:
                    failure = task.exception()
                    if failure is None:
                        return task.result(), owners[task]
                    assert isinstance(failure, UpstreamError)  # noqa: S101  # _attempt raises only these
                    error = failure
            assert error is not None  # noqa: S101  # both tasks failed
            raise error
        finally:
            losers = [task for task in owners if not task.done()]
            for task in losers:
                task.cancel()
            await asyncio.gather(*losers, return_exceptions=True)

    def _count(self, upstream: Upstream, method: str, outcome: str, started: float) -> None:
        metrics = self.metrics
        metrics.child(metrics.rpc_upstream_requests, upstream.name, method, outcome).inc()
        metrics.child(metrics.rpc_upstream_duration, upstream.name).observe(
            time.perf_counter() - started
        )


def _weighted_order(upstreams: list[Upstream]) -> list[Upstream]:
    """Efraimidis-Spirakis weighted shuffle: heavier nodes tend to come first."""
    keyed = [(random.random() ** (1.0 / u.weight), u) for u in upstreams]  # noqa: S311
    return [u for _, u in sorted(keyed, key=lambda pair: -pair[0])]


__all__ = ["NON_IDEMPOTENT", "NewHead", "NoUpstream", "UpstreamFailed", "UpstreamPool"]
