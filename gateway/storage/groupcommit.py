"""Group commit: concurrent writes gathered into groups, each group stored by one call.

While one group commits, the next gathers, so a busy gateway makes few, large commits and
every caller still returns only after its own write is durable. ``commit`` gets the group
and returns one outcome per item, in order (an exception for an item that failed alone);
if ``commit`` itself raises, every item of the group gets that exception.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

ItemT = TypeVar("ItemT")  # an item to write
OutcomeT = TypeVar("OutcomeT")  # its outcome

Commit = Callable[[list[ItemT]], Awaitable[list[OutcomeT | BaseException]]]


class GroupCommit(Generic[ItemT, OutcomeT]):
    def __init__(self, commit: Commit[ItemT, OutcomeT], *, name: str, max_group: int = 256) -> None:
        self._commit = commit
        self._name = name
        self._max_group = max_group
        self._queue: list[tuple[ItemT, asyncio.Future[OutcomeT]]] = []
        self._flushing: asyncio.Task[None] | None = None

    async def submit(self, item: ItemT) -> OutcomeT:
        future: asyncio.Future[OutcomeT] = asyncio.get_running_loop().create_future()
        self._queue.append((item, future))
        if self._flushing is None or self._flushing.done():
            self._flushing = asyncio.create_task(self._flush(), name=self._name)
        return await future

    async def _flush(self) -> None:
        while self._queue:
            group = self._queue[: self._max_group]
            self._queue = self._queue[self._max_group :]
            try:
                outcomes = await self._commit([item for item, _ in group])
            except Exception as exc:  # noqa: BLE001  # every waiter learns of the failure
                outcomes = [exc] * len(group)
            for (_, future), outcome in zip(group, outcomes, strict=True):
                if future.done():  # its caller went away
                    continue
                if isinstance(outcome, BaseException):
                    future.set_exception(outcome)
                else:
                    future.set_result(outcome)
