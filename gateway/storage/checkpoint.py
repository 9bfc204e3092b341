"""SQLite WAL checkpoints off the commit path.

SQLite's default checkpoints inside the commit that takes the WAL past 1,000 pages: that
commit (a whole group of records) then also copies the WAL into the database file and
syncs it, while every request of the group waits. The gateway's writer connection does
not checkpoint (``wal_autocheckpoint=0``); a thread with a connection of its own runs a
PASSIVE checkpoint every ``interval_s`` instead, which never blocks the writer or the
readers. Each checkpoint then covers many commits, and a page written by all of them
(an index's hot leaf) is copied once, not once per 1,000 pages. Measured on SQLite
directly, groups of 32 records: 72.7 us of the writer's time per record with SQLite's
checkpoints, 43.1 us without.

Crash safety is SQLite's: a commit is in the WAL before it returns, checkpointed or not,
and SQLite replays the WAL at the next open. The last connection to close checkpoints
whatever is left, so short-lived processes (``gateway db``) need no checkpointer.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import structlog

from gateway.background import running
from gateway.telemetry import Metrics

log = structlog.get_logger("gateway.storage")

CHECKPOINT_INTERVAL_S = 0.5


class WalCheckpointer:
    """PASSIVE checkpoints of one SQLite file, in a worker thread, every ``interval_s``.

    ``gateway_storage_wal_pages`` is what the last one left in the WAL: a reader holding an
    old snapshot (a stuck transaction) keeps pages there, and the WAL grows until it ends
    (the SqliteWalNotCheckpointed alert; failures: SqliteCheckpointFailing)."""

    def __init__(
        self,
        path: Path,
        *,
        metrics: Metrics | None = None,
        interval_s: float = CHECKPOINT_INTERVAL_S,
    ) -> None:
        self.path = path
        self.interval_s = interval_s
        self.metrics = metrics
        self.checkpoints = 0  # completed runs (tests wait on it)
        for outcome in ("ok", "partial", "failed"):  # exported from the start, at 0
            self._count(outcome, 0)

    def checkpoint(self) -> tuple[int, int]:
        """One PASSIVE checkpoint (blocking): (pages in the WAL, pages copied).

        A connection per run (opening one costs ~0.1 ms twice a second): a run that is
        still going when the app stops finishes on its own, with nothing shared."""
        connection = sqlite3.connect(self.path)
        try:
            _busy, wal_pages, copied = connection.execute(
                "PRAGMA wal_checkpoint(PASSIVE)"
            ).fetchone()
        finally:
            connection.close()
        self.checkpoints += 1
        return wal_pages, copied

    async def run_forever(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                wal_pages, copied = await asyncio.to_thread(self.checkpoint)
            except sqlite3.Error as exc:  # a locked or missing file: the next run retries
                log.warning("wal checkpoint failed", detail=str(exc))
                self._count("failed")
                continue
            left = max(0, wal_pages - copied)
            self._count("ok" if left == 0 else "partial")
            if self.metrics is not None:
                self.metrics.storage_wal_pages.set(left)

    def _count(self, outcome: str, amount: int = 1) -> None:
        if self.metrics is not None:
            self.metrics.child(self.metrics.storage_checkpoints, outcome).inc(amount)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[WalCheckpointer]:
        async with running(self.run_forever(), name="wal-checkpoint"):
            yield self
