"""A SQLite connection of the gateway's own, in a thread of its own, for whole group commits.

SQLAlchemy on aiosqlite makes each statement a hop to aiosqlite's thread and back; a group
of records (a SELECT, then an INSERT or two per record) would be dozens of hops. The
records' group commit instead runs as one plain function on a stdlib ``sqlite3``
connection in this worker's thread: one hop a group. It is a second writer of the same
file beside SQLAlchemy's: SQLite serializes the two (``BEGIN IMMEDIATE`` waits, up to
``busy_timeout``, for the other's transaction), with the same pragmas on both.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

# As SQLAlchemy's connections get them (database._on_sqlite_connect and the writer's).
PRAGMAS = (
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=NORMAL",
    "PRAGMA foreign_keys=ON",
    "PRAGMA busy_timeout=5000",
    "PRAGMA wal_autocheckpoint=0",  # storage.checkpoint checkpoints, off the commit path
)


def in_transaction(connection: sqlite3.Connection, work: Callable[[sqlite3.Connection], T]) -> T:
    """``work`` in one write transaction: committed when it returns, rolled back if it
    raises."""
    if connection.in_transaction:  # left open by a failed commit: not ours to keep
        connection.rollback()
    connection.execute("BEGIN IMMEDIATE")
    try:
        result = work(connection)
    except BaseException:
        connection.rollback()
        raise
    connection.commit()
    return result


class SqliteWorker:
    """One ``sqlite3`` connection to ``path``, opened and used in one thread only."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-writer")
        self._connection: sqlite3.Connection | None = None

    async def run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """``work`` in one transaction in the worker's thread."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._run_here, work)

    def _run_here(self, work: Callable[[sqlite3.Connection], T]) -> T:
        if self._connection is None:
            # Autocommit mode: in_transaction opens and ends every transaction itself.
            connection = sqlite3.connect(self.path, isolation_level=None)
            for pragma in PRAGMAS:
                connection.execute(pragma)
            self._connection = connection
        return in_transaction(self._connection, work)

    def _close_here(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    async def close(self) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self._close_here)
        self._executor.shutdown(wait=True)
