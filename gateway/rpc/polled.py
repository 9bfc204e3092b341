"""Subscriptions without a WebSocket node: ``newHeads`` and ``logs`` served by polling.

With HTTP-only upstreams nothing is pushed, so one ``ChainFollower`` per gateway asks the
nodes for the tip every ``rpc.subscription_poll_s`` and walks every block it has not
announced yet, in order: one header per block (no gaps, no repeats, however many blocks
arrived between two polls), and one ``eth_getLogs`` over the new range per distinct logs
filter, keeping only logs of the blocks it announced. A block whose parent is not the
block announced before it is a reorg: the follower walks back to the common ancestor,
sends the dropped blocks' logs again with ``"removed": true`` (as a node does), then the
new branch. Latency is the poll interval plus the node's answer.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
import structlog

from gateway.errors import GatewayError, UpstreamError
from gateway.jsonexact import dumps_exact

log = structlog.get_logger("gateway.rpc.polled")

Call = Callable[[str, list[Any]], Awaitable[Any]]  # a JSON-RPC call to the pool: its result
Emit = Callable[[bytes], None]  # a notification's result, to one feed's subscribers

# Block fields that a node's newHeads notification does not carry (it sends the header).
_NOT_HEADER = ("transactions", "uncles", "withdrawals", "size", "totalDifficulty")
REORG_DEPTH = 64  # blocks remembered to find a common ancestor and to retract logs
MAX_BLOCKS_PER_POLL = 256  # a follower far behind catches up over several polls


def header_of(block: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in block.items() if key not in _NOT_HEADER}


def _number(value: Any) -> int:  # noqa: ANN401  # a JSON quantity
    return int(value, 16) if isinstance(value, str) and value.startswith("0x") else -1


class LogsWatch:
    """One distinct logs filter and where its matches go."""

    def __init__(self, criteria: dict[str, Any], emit: Emit) -> None:
        self.criteria = {k: v for k, v in criteria.items() if k not in {"fromBlock", "toBlock"}}
        self.emit = emit
        self.sent: OrderedDict[str, list[dict[str, Any]]] = OrderedDict()  # block hash -> logs

    def remember(self, block_hash: str, logs: list[dict[str, Any]]) -> None:
        self.sent[block_hash] = logs
        while len(self.sent) > REORG_DEPTH:
            self.sent.popitem(last=False)


class ChainFollower:
    """Polls the tip and announces every new block to head and logs watchers."""

    def __init__(
        self, call: Call, *, poll_s: float, on_block: Callable[[int], None] | None = None
    ) -> None:
        self._call = call
        self.poll_s = poll_s
        self._on_block = on_block  # told each block number announced (the served tip)
        self.heads: dict[object, Emit] = {}  # a newHeads feed's key -> where headers go
        self.logs: dict[object, LogsWatch] = {}
        self._chain: OrderedDict[int, str] = OrderedDict()  # number -> hash, announced
        self._wake = asyncio.Event()
        # Set once the starting tip is known: a block mined after it is announced, so a
        # subscription is answered only then (none of the blocks after its reply is lost).
        self.started = asyncio.Event()

    @property
    def idle(self) -> bool:
        return not self.heads and not self.logs

    def restart(self) -> None:
        """Forget where it was (no subscriber is left): the next one starts at the tip."""
        self._chain.clear()
        self.started.clear()

    def wake(self) -> None:
        """A new block is known (a head poll of the pool): look now, not at the next poll."""
        self._wake.set()

    async def run(self) -> None:
        """Poll until cancelled; a failed poll is logged and tried again at the next one."""
        while True:
            try:
                await self.poll()
                self.started.set()
            except (GatewayError, ValueError, KeyError, TypeError) as exc:
                log.warning("subscription poll failed", error=str(exc)[:300])
            self._wake.clear()
            try:
                async with asyncio.timeout(self.poll_s):
                    await self._wake.wait()
            except TimeoutError:
                pass

    async def poll(self) -> None:
        tip = _number(await self._call("eth_blockNumber", []))
        if not self._chain:  # the first poll: start after the current tip
            block = await self._block(tip)
            self._chain[tip] = block["hash"]
            return
        last = next(reversed(self._chain))
        if tip < last:  # a shorter branch won: the reorg shows when its next block comes
            return
        blocks = [
            await self._block(n) for n in range(last + 1, min(tip, last + MAX_BLOCKS_PER_POLL) + 1)
        ]
        if blocks and blocks[0]["parentHash"] != self._chain[last]:
            blocks = await self._rewind(blocks)
        if not blocks:
            return
        await self._announce(blocks)

    async def _block(self, number: int) -> dict[str, Any]:
        block = await self._call("eth_getBlockByNumber", [hex(number), False])
        if not isinstance(block, dict):
            raise UpstreamError(detail=f"block {number} not found")
        return block

    async def _rewind(self, blocks: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The new branch from the common ancestor on (logs of the dropped blocks retracted)."""
        branch = list(blocks)
        while self._chain:
            number, block_hash = next(reversed(self._chain.items()))
            if branch[0]["parentHash"] == block_hash:
                break
            self._chain.popitem()
            self._retract(block_hash)
            if self._chain:
                branch.insert(0, await self._block(number))
        log.warning("reorg followed", from_block=_number(branch[0]["number"]))
        return branch

    def _retract(self, block_hash: str) -> None:
        for watch in self.logs.values():
            for entry in watch.sent.pop(block_hash, []):
                watch.emit(orjson.dumps({**entry, "removed": True}))

    async def _announce(self, blocks: list[dict[str, Any]]) -> None:
        matched = await self._logs_of(blocks)
        for block in blocks:
            number, block_hash = _number(block["number"]), block["hash"]
            self._chain[number] = block_hash
            while len(self._chain) > REORG_DEPTH:
                self._chain.popitem(last=False)
            if self._on_block is not None:
                self._on_block(number)
            header = dumps_exact(header_of(block))
            for emit in list(self.heads.values()):
                emit(header)
            for watch, by_block in matched:
                entries = by_block.get(block_hash, [])
                watch.remember(block_hash, entries)
                for entry in entries:
                    watch.emit(dumps_exact(entry))

    async def _logs_of(
        self, blocks: list[dict[str, Any]]
    ) -> list[tuple[LogsWatch, dict[str, list[dict[str, Any]]]]]:
        """Each watch's logs in ``blocks``, by block hash (logs of other blocks, from a
        branch the node switched to meanwhile, are left for the next poll to sort out)."""
        wanted = {block["hash"] for block in blocks}
        low, high = blocks[0]["number"], blocks[-1]["number"]
        out = []
        for watch in list(self.logs.values()):
            found = await self._call(
                "eth_getLogs", [{**watch.criteria, "fromBlock": low, "toBlock": high}]
            )
            by_block: dict[str, list[dict[str, Any]]] = {}
            for entry in found if isinstance(found, list) else []:
                if isinstance(entry, dict) and entry.get("blockHash") in wanted:
                    by_block.setdefault(entry["blockHash"], []).append(entry)
            out.append((watch, by_block))
        return out
