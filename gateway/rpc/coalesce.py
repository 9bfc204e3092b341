"""Request coalescing: identical reads in flight at the same time make one node call.

The first caller of a key (the leader) makes the call; callers of the same key that arrive
while it is in flight wait for its outcome, answer or error, instead of calling the node
themselves (eRPC calls this multiplexing). Only pure reads are coalesced (``COALESCIBLE``):
never a transaction, a filter (each caller needs its own), or anything with side effects.

A leader whose own caller goes away (a client disconnects) does not fail the others: its
waiters see ``_LeaderGone`` and the first of them leads a new call. A waiter that goes
away leaves the leader's call alone (it waits through ``asyncio.shield``). No future is
made unless a second caller arrives, so a call nobody shares costs two dict operations.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")

# Reads whose answer depends only on the method, the params and the chain's state (the
# key carries the head they are read at).
COALESCIBLE = frozenset(
    {
        "eth_blockNumber",
        "eth_chainId",
        "net_version",
        "web3_clientVersion",
        "eth_syncing",
        "eth_gasPrice",
        "eth_maxPriorityFeePerGas",
        "eth_blobBaseFee",
        "eth_feeHistory",
        "eth_getBalance",
        "eth_getCode",
        "eth_getStorageAt",
        "eth_getTransactionCount",
        "eth_getProof",
        "eth_call",
        "eth_estimateGas",
        "eth_getLogs",
        "eth_getBlockByNumber",
        "eth_getBlockByHash",
        "eth_getBlockReceipts",
        "eth_getBlockTransactionCountByNumber",
        "eth_getBlockTransactionCountByHash",
        "eth_getTransactionByHash",
        "eth_getTransactionReceipt",
        "eth_getTransactionByBlockHashAndIndex",
        "eth_getTransactionByBlockNumberAndIndex",
        "eth_getUncleCountByBlockHash",
        "eth_getUncleCountByBlockNumber",
    }
)


class _LeaderGone(Exception):  # a signal between callers, never raised out
    """The leading caller was cancelled before its call finished."""


class _Flight(Generic[T]):
    __slots__ = ("future",)

    def __init__(self) -> None:
        self.future: asyncio.Future[T] | None = None  # made when a second caller arrives


class Coalescer(Generic[T]):
    """``await run(key, fetch)``: ``fetch()``'s outcome, shared by every concurrent caller
    of ``key``."""

    def __init__(self) -> None:
        self._flights: dict[object, _Flight[T]] = {}

    def __len__(self) -> int:
        return len(self._flights)

    async def run(self, key: object, fetch: Callable[[], Awaitable[T]]) -> tuple[T, bool]:
        """(outcome, whether it came from another caller's call)."""
        while (flight := self._flights.get(key)) is not None:
            if flight.future is None:
                flight.future = asyncio.get_running_loop().create_future()
            try:
                outcome = await asyncio.shield(flight.future)
            except _LeaderGone:
                continue  # lead a call of our own (or join the one a peer leads now)
            return outcome, True
        return await self._lead(key, fetch), False

    async def _lead(self, key: object, fetch: Callable[[], Awaitable[T]]) -> T:
        flight: _Flight[T] = _Flight()
        self._flights[key] = flight
        try:
            outcome = await fetch()
        except asyncio.CancelledError:
            self._settle(key, flight, error=_LeaderGone())
            raise
        except Exception as exc:
            self._settle(key, flight, error=exc)
            raise
        self._settle(key, flight, outcome=outcome)
        return outcome

    def _settle(
        self,
        key: object,
        flight: _Flight[T],
        *,
        outcome: T | None = None,
        error: BaseException | None = None,
    ) -> None:
        if self._flights.get(key) is flight:
            del self._flights[key]
        future = flight.future
        if future is None or future.done():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(outcome)  # type: ignore[arg-type]  # T when no error
