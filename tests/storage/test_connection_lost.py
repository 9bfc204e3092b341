"""A database connection lost in the middle of a query is 503 storage.unavailable on both
drivers, never a 500: PostgreSQL's backend terminated (asyncpg), SQLite's file gone."""

from __future__ import annotations

import asyncio

import pytest
import sqlalchemy as sa

from gateway.errors import StorageUnavailable
from gateway.storage.database import Database

pytestmark = pytest.mark.integration


async def test_a_postgresql_connection_closed_mid_query_is_unavailable(postgres):
    db = Database.open(postgres.new_database())
    killer = Database.open(postgres.new_database())
    try:

        async def sleeping() -> None:
            async with db.operation("test"), db.engine.connect() as connection:
                await connection.execute(sa.text("SELECT pg_sleep(5)"))

        task = asyncio.ensure_future(sleeping())
        await asyncio.sleep(0.5)
        async with killer.engine.connect() as connection:
            await connection.execute(
                sa.text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE query LIKE 'SELECT pg_sleep%' AND pid <> pg_backend_pid()"
                )
            )
        with pytest.raises(StorageUnavailable):
            await task
        async with db.operation("after"), db.engine.connect() as connection:  # heals itself
            assert (await connection.execute(sa.text("SELECT 1"))).scalar() == 1
    finally:
        await db.close()
        await killer.close()


async def test_a_sqlite_database_that_cannot_be_opened_is_unavailable(tmp_path):
    """SQLite's nearest to a lost connection: its file's folder gone (a volume unmounted)."""
    import shutil

    folder = tmp_path / "volume"
    db = Database.open(f"sqlite:///{folder / 'gw.db'}")
    try:
        async with db.engine.connect() as connection:
            await connection.execute(sa.text("CREATE TABLE t (x)"))
            await connection.commit()
        await db.engine.dispose()
        shutil.rmtree(folder)
        with pytest.raises(StorageUnavailable):
            async with db.operation("test"), db.engine.connect() as connection:
                await connection.execute(sa.text("SELECT * FROM t"))
    finally:
        await db.close()
        # aiosqlite stops the thread of the connection that failed to open without awaiting
        # it: let every such thread finish while this test's loop still runs (0.21: the
        # Connection is the thread; 0.22: a thread running its _connection_worker_thread).
        import threading

        import aiosqlite

        def aiosqlite_threads() -> list[threading.Thread]:
            return [
                t
                for t in threading.enumerate()
                if t.is_alive()
                and (isinstance(t, aiosqlite.Connection) or "connection_worker" in t.name)
            ]

        for _ in range(100):
            if not aiosqlite_threads():
                break
            await asyncio.sleep(0.05)
