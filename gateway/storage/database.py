"""The database handle: engine lifecycle, SQLite pragmas, and the readiness ping."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import sqlalchemy as sa
import structlog
from aiohttp import web
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from gateway.errors import StorageUnavailable
from gateway.storage.groupcommit import GroupCommit
from gateway.storage.sqlite_worker import PRAGMAS, SqliteWorker
from gateway.telemetry import Metrics

log = structlog.get_logger("gateway.storage")
T = TypeVar("T")


def sqlalchemy_url(url: str) -> str:
    """The gateway's database URL (``sqlite:///…``, ``postgresql://…``) -> an async driver URL."""
    scheme, _, rest = url.partition("://")
    if scheme == "sqlite":
        return f"sqlite+aiosqlite://{rest}"
    if scheme in {"postgresql", "postgres"}:
        return f"postgresql+asyncpg://{rest}"
    raise ValueError(f"unsupported database scheme {scheme!r}")


def _sqlite_path(url: str) -> Path | None:
    path = urlsplit(url).path
    if path in {"", "/", "/:memory:"}:
        return None
    # sqlite:///relative/path and sqlite:////absolute/path, as SQLAlchemy reads them.
    return Path(path[1:])


def _on_sqlite_connect(dbapi_connection: Any, _record: object) -> None:  # noqa: ANN401  # DB-API objects are untyped
    cursor = dbapi_connection.cursor()
    # WAL: readers never block the writer. synchronous=NORMAL in WAL mode survives a crash
    # of the process (kill -9); only an OS crash or power loss can lose the last commits.
    for pragma in PRAGMAS[:4]:  # journal_mode, synchronous, foreign_keys, busy_timeout
        cursor.execute(pragma)
    cursor.close()


def _on_sqlite_writer_connect(dbapi_connection: Any, _record: object) -> None:  # noqa: ANN401
    """The writer's commits do not checkpoint: ``storage.checkpoint`` does, off their path."""
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA wal_autocheckpoint=0")
    cursor.close()


class Database:
    """An async engine plus what the gateway needs to know about its backend."""

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        backend: str,
        writer: AsyncEngine | None = None,
        path: Path | None = None,
    ) -> None:
        self.metrics: Metrics | None = None  # set by storage_ctx
        self.engine = engine
        # SQLite has one writer at a time: writes queue for the one writer connection here,
        # in asyncio, instead of spinning in SQLite's busy handler (which sleeps in ms).
        self.writer = writer or engine
        self.backend = backend
        self.path = path  # a SQLite file's (None: PostgreSQL, or SQLite in memory)
        self.deadline_s: float | None = None  # of one operation (see ``open``)
        # A SQLite file's whole group commits (``in_writer_thread``); none in memory.
        self.sqlite_worker = SqliteWorker(path) if backend == "sqlite" and path else None
        self._writes: GroupCommit[Callable[[AsyncConnection], Awaitable[Any]], Any] = GroupCommit(
            self._commit_writes, name="sqlite-group-commit"
        )

    @classmethod
    def open(cls, url: str, *, deadline_s: float | None = None) -> Database:
        """``deadline_s``: on PostgreSQL, how long one operation (``operation``) and one
        connection attempt may take, so that a partition is a 503 within it rather than a
        wait until TCP gives up. SQLite is a local file: no deadline."""
        backend = "sqlite" if url.startswith("sqlite") else "postgresql"
        if backend == "sqlite":
            path = _sqlite_path(url)
            if path is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
        if backend != "sqlite":
            # asyncpg's own deadlines, half the operation's each: a stale connection's ping
            # and the new connection after it, or a query and the rollback after it, both
            # fit in the operation's deadline (``gateway db upgrade`` opens with none).
            connect_args = (
                {"timeout": deadline_s / 2, "command_timeout": deadline_s / 2}
                if deadline_s is not None
                else {}
            )
            engine = create_async_engine(
                sqlalchemy_url(url), pool_pre_ping=True, connect_args=connect_args
            )
            database = cls(engine, backend=backend)
            database.deadline_s = deadline_s
            return database
        engine = create_async_engine(sqlalchemy_url(url))
        writer = create_async_engine(
            sqlalchemy_url(url), pool_size=1, max_overflow=0, pool_timeout=30
        )
        for each in (engine, writer):
            event.listen(each.sync_engine, "connect", _on_sqlite_connect)
        if path is not None:
            event.listen(writer.sync_engine, "connect", _on_sqlite_writer_connect)
        return cls(engine, backend=backend, writer=writer, path=path)

    async def ping(self, timeout_s: float = 2.0) -> None:
        """Raises StorageUnavailable unless the database answers ``SELECT 1`` in time."""
        try:
            async with asyncio.timeout(timeout_s), self.engine.connect() as connection:
                await connection.execute(sa.text("SELECT 1"))
        except (TimeoutError, OSError, sa.exc.SQLAlchemyError) as exc:
            raise StorageUnavailable(detail=f"{type(exc).__name__}: {exc}") from exc

    async def write(self, work: Callable[[AsyncConnection], Awaitable[T]]) -> T:
        """Run ``work`` in a write transaction, durable when this returns.

        On SQLite, concurrent writes share one transaction (group commit through the one
        writer connection), each in a SAVEPOINT so one failing does not undo the others; a
        sign-in's two small writes then cost a share of one commit instead of a commit each.
        PostgreSQL runs each in a transaction of its own."""
        if self.backend != "sqlite":
            async with self.writer.begin() as connection:
                return await work(connection)
        result: T = await self._writes.submit(work)
        return result

    async def _commit_writes(
        self, group: list[Callable[[AsyncConnection], Awaitable[Any]]]
    ) -> list[Any]:
        outcomes: list[Any] = []
        async with self.writer.begin() as connection:
            for work in group:
                try:
                    async with connection.begin_nested():
                        outcomes.append(await work(connection))
                except sa.exc.IntegrityError as exc:  # this write only
                    outcomes.append(exc)
        return outcomes

    async def in_writer_thread(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """SQLite file: ``work`` in one transaction on the gateway's own connection, in
        its own thread (``SqliteWorker``): a whole group commit in one thread hop, where
        each SQLAlchemy statement is a hop of its own. Only when ``sqlite_worker`` is set."""
        if self.sqlite_worker is None:
            raise RuntimeError("in_writer_thread needs a SQLite file (sqlite_worker)")
        return await self.sqlite_worker.run(work)

    @contextlib.asynccontextmanager
    async def operation(self, op: str) -> AsyncIterator[None]:
        """One storage operation: counted and timed by outcome, failures of the database
        (not of the query) turned into StorageUnavailable (503)."""
        started = time.perf_counter()
        outcome = "ok"
        try:
            async with storage_errors(), asyncio.timeout(self.deadline_s):
                yield
        except StorageUnavailable:
            outcome = "unavailable"
            raise
        except Exception:
            outcome = "error"
            raise
        finally:
            if self.metrics is not None:
                observe_storage(self.metrics, self.backend, op, outcome, started)

    async def close(self) -> None:
        if self.sqlite_worker is not None:
            await self.sqlite_worker.close()
        await self.engine.dispose()
        if self.writer is not self.engine:
            await self.writer.dispose()


@contextlib.asynccontextmanager
async def storage_errors() -> AsyncIterator[None]:
    """Database failures become StorageUnavailable (503 with a clear code), never a 500."""
    try:
        yield
    except (
        sa.exc.OperationalError,
        sa.exc.InterfaceError,
        sqlite3.OperationalError,  # the gateway's own SQLite connection (sqlite_worker)
        OSError,
        TimeoutError,
    ) as exc:
        raise StorageUnavailable(detail=f"{type(exc).__name__}: {exc}") from exc
    except sa.exc.DBAPIError as exc:
        # A connection lost mid-query (asyncpg's ConnectionDoesNotExistError, a backend
        # terminated) is a plain DBAPIError that SQLAlchemy marks as a disconnect.
        if exc.connection_invalidated:
            raise StorageUnavailable(detail=f"{type(exc).__name__}: {exc}") from exc
        raise


def observe_storage(metrics: Metrics, backend: str, op: str, outcome: str, started: float) -> None:
    metrics.child(metrics.storage_operations, backend, op, outcome).inc()
    metrics.child(metrics.storage_duration, backend, op).observe(time.perf_counter() - started)


STORAGE = web.AppKey("storage", Database)


class SchemaOutOfDate(RuntimeError):
    def __init__(self, current: str | None, head: str | None) -> None:
        super().__init__(
            f"database schema is at revision {current or 'none'}, this gateway needs {head}: "
            "run `gateway db upgrade`"
        )
