"""A finality-aware response cache: only answers that cannot change, or that hold until the
next head, are kept.

Rules (``cache_rule``):
- ``eth_chainId``, ``net_version``: for good;
- state at a block hash (EIP-1898 ``{"blockHash": …}`` params, ``eth_getLogs`` with
  ``blockHash``): until a reorg (the state at a hash never changes, but a block that left
  the canonical chain is unknown to nodes, or refused with ``requireCanonical``);
- by block number at or below the finalized block: while that block stays canonical;
- a block by hash, a transaction or a receipt: once the answer names its block, while that
  block stays canonical (not at all while pending or unknown);
- anything read at ``latest`` (explicit or implied): until the next head.

Entries remember the block height they depend on (or that they depend on a block named by
hash). A reorg drops every entry that depends on a block (only the block-independent ones
survive): reorgs are rare, and a full flush
is right whatever their depth, even past "finalized" on a dev chain. The store is an LRU
bounded in bytes; its interface (get/put/invalidate) is what a Redis backend implements.
"""

from __future__ import annotations

import contextlib
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from gateway.jsonexact import dumps_exact

FOREVER = -1  # the entry's height: it depends on no block
BY_HASH = -2  # the entry's height: it depends on a block named by its hash (kept until a reorg)

# Methods whose last param is a block tag/number/EIP-1898 object.
_BLOCK_PARAM_METHODS = {
    "eth_getBalance": 1,
    "eth_getCode": 1,
    "eth_getTransactionCount": 1,
    "eth_getStorageAt": 2,
    "eth_getStorageValues": 1,
    "eth_call": 1,
    "eth_getProof": 2,
    "eth_getBlockByNumber": 0,
    "eth_getBlockTransactionCountByNumber": 0,
    "eth_getTransactionByBlockNumberAndIndex": 0,
    "eth_getBlockReceipts": 0,
    "eth_getUncleCountByBlockNumber": 0,
}
_BY_HASH = {
    "eth_getBlockByHash",
    "eth_getBlockTransactionCountByHash",
    "eth_getTransactionByBlockHashAndIndex",
    "eth_getUncleCountByBlockHash",
}
_BY_TX_HASH = {"eth_getTransactionByHash", "eth_getTransactionReceipt"}
_LATEST_ONLY = {
    "eth_blockNumber",
    "eth_gasPrice",
    "eth_maxPriorityFeePerGas",
    "eth_blobBaseFee",
    "eth_baseFee",
}
_FOREVER = {"eth_chainId", "net_version"}


@dataclass(frozen=True, slots=True)
class Rule:
    """How a call may be cached: ``height`` is FOREVER, BY_HASH, a block number (kept while
    that block is canonical) or None for "until the next head" (head-scoped)."""

    height: int | None
    from_result: bool = False  # the height is the block the answer names


def _block_ref(value: Any, *, finalized: Callable[[], int]) -> Rule | None:  # noqa: ANN401  # JSON
    """Cacheability of a block reference (tag, number or EIP-1898 object)."""
    if isinstance(value, dict):
        if "blockHash" in value:
            return _UNTIL_REORG
        value = value.get("blockNumber")
    if value is None or value in {"latest", "pending"}:
        return Rule(height=None) if value != "pending" else None
    if value in {"safe", "finalized", "earliest"}:
        return None if value != "earliest" else Rule(height=0)
    if isinstance(value, str) and value.startswith("0x"):
        try:
            number = int(value, 16)
        except ValueError:
            return None
        return Rule(height=number) if 0 <= number <= finalized() else None
    return None


_KEEP = Rule(height=FOREVER)
_UNTIL_REORG = Rule(height=BY_HASH)
_UNTIL_NEXT_HEAD = Rule(height=None)


def cache_rule(method: str, params: Any, *, finalized: Callable[[], int]) -> Rule | None:  # noqa: ANN401, PLR0911
    """How (and whether) a call's answer may be cached; ``finalized`` gives the finalized
    height (asked only for calls at a block number)."""
    if method in _FOREVER:
        return _KEEP
    if method in _LATEST_ONLY:
        return _UNTIL_NEXT_HEAD
    if not isinstance(params, list):
        return None
    if method in _BY_HASH or method in _BY_TX_HASH:
        return Rule(height=None, from_result=True)
    if method == "eth_getLogs":
        return _logs_rule(params, finalized=finalized)
    index = _BLOCK_PARAM_METHODS.get(method)
    if index is None:
        return None
    return _block_ref(params[index] if len(params) > index else "latest", finalized=finalized)


def _logs_rule(params: list[Any], *, finalized: Callable[[], int]) -> Rule | None:
    if not params or not isinstance(params[0], dict):
        return None
    query = params[0]
    if "blockHash" in query:
        return _UNTIL_REORG
    to_rule = _block_ref(query.get("toBlock", "latest"), finalized=finalized)
    from_rule = _block_ref(query.get("fromBlock", "latest"), finalized=finalized)
    if to_rule is None or from_rule is None:
        return None
    if to_rule.height is None:
        return Rule(height=None)
    return Rule(height=to_rule.height)


def result_height(result: Any) -> int | None:  # noqa: ANN401
    """The block an answer names: a block's ``number``, a transaction's or receipt's
    ``blockNumber``; None while pending or unknown (a null answer)."""
    if isinstance(result, dict):
        for field in ("blockNumber", "number"):
            value = result.get(field)
            if isinstance(value, str) and value.startswith("0x"):
                return int(value, 16)
    if isinstance(result, int):  # a count by block hash: depends on that block only
        return None
    return None


def cache_key(method: str, params: Any) -> bytes:  # noqa: ANN401
    return method.encode() + b"|" + dumps_exact(params, sort_keys=True)


@dataclass(slots=True)
class _Entry:
    result: bytes  # the JSON of the ``result`` member, as the node sent it
    height: int | None
    head: int  # for head-scoped entries: the head they were read at


class MemoryCache:
    """LRU of results bounded by ``max_bytes`` (keys and values counted)."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.size = 0
        self._entries: OrderedDict[bytes, _Entry] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: bytes, *, head: int) -> bytes | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry.height is None and entry.head != head:  # read at an older head
            self._drop(key)
            return None
        self._entries.move_to_end(key)
        return entry.result

    def put(self, key: bytes, result: bytes, *, height: int | None, head: int) -> None:
        cost = len(key) + len(result)
        if cost > self.max_bytes // 8:  # one huge answer must not flush everything
            return
        if key in self._entries:
            self._drop(key)
        self._entries[key] = _Entry(result, height, head)
        self.size += cost
        while self.size > self.max_bytes:
            oldest = next(iter(self._entries))
            self._drop(oldest)

    def invalidate_from(self, height: int) -> int:
        """Drop entries that depend on a block at or above ``height``, every head-scoped
        one and every one read at a block hash (a reorg)."""
        doomed = [
            key
            for key, entry in self._entries.items()
            if entry.height is None
            or entry.height == BY_HASH
            or (entry.height != FOREVER and entry.height >= height)
        ]
        for key in doomed:
            self._drop(key)
        return len(doomed)

    def _drop(self, key: bytes) -> None:
        entry = self._entries.pop(key)
        self.size -= len(key) + len(entry.result)


class RedisCache:
    """The second level shared by replicas: only answers that are final everywhere (see
    ``RpcService._shareable``), with a TTL. Best effort: a Redis failure is a miss."""

    def __init__(
        self, client: aioredis.Redis, *, namespace: int | None = None, ttl_s: int = 3600
    ) -> None:
        self._redis = client
        self._ttl_s = ttl_s
        # Each chain's answers under its own keys: one chain's never answer another's.
        self._prefix = b"gw:rpc:" if namespace is None else b"gw:rpc:%d:" % namespace

    async def get(self, key: bytes) -> bytes | None:
        try:
            value = await self._redis.get(self._prefix + key)
        except (RedisError, OSError):
            return None
        return bytes(value) if value is not None else None

    async def put(self, key: bytes, result: bytes) -> None:
        with contextlib.suppress(RedisError, OSError):
            await self._redis.set(self._prefix + key, result, ex=self._ttl_s)
