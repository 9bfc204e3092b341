"""WAL checkpoints off the commit path: the writer's commits leave the WAL alone, the
checkpointer copies it into the database file, and a commit survives a kill before any
checkpoint ran (SQLite replays the WAL)."""

import asyncio
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import sqlalchemy as sa

from gateway.storage import STORAGE, Database
from gateway.storage.checkpoint import WalCheckpointer
from gateway.storage.schema import revoked_tokens
from gateway.telemetry import Metrics


async def _write_many(database: Database, count: int, prefix: str) -> None:
    async def work(connection):
        await connection.execute(
            sa.insert(revoked_tokens),
            [
                {"jti": f"{prefix}{i}-" + "x" * 200, "revoked_at": 1.0, "expires_at": 2.0}
                for i in range(count)
            ],
        )

    await database.write(work)


def _database_file_bytes(database: Database) -> int:
    """The database file's size: it grows only when a checkpoint copies pages into it."""
    assert database.path is not None
    return database.path.stat().st_size


async def test_the_writer_does_not_checkpoint(database):
    async with database.writer.connect() as connection:
        value = (await connection.exec_driver_sql("PRAGMA wal_autocheckpoint")).scalar_one()
    assert value == 0
    async with database.engine.connect() as connection:  # readers keep SQLite's default
        value = (await connection.exec_driver_sql("PRAGMA wal_autocheckpoint")).scalar_one()
    assert value == 1000
    size_before = _database_file_bytes(database)
    for batch in range(40):  # ~2 MB: past SQLite's own 1,000-page checkpoint threshold
        await _write_many(database, 200, f"b{batch}-")
    assert Path(f"{database.path}-wal").stat().st_size > 1000 * 4096
    assert _database_file_bytes(database) == size_before


async def test_the_checkpointer_copies_the_wal_into_the_database(database):
    for batch in range(10):
        await _write_many(database, 200, f"b{batch}-")
    checkpointer = WalCheckpointer(database.path, interval_s=0.05)
    size_before = _database_file_bytes(database)
    async with checkpointer.running():
        while checkpointer.checkpoints < 2:
            await asyncio.sleep(0.02)
    assert _database_file_bytes(database) > size_before + 200 * 10 * 200
    async with database.engine.connect() as connection:
        count = (
            await connection.execute(sa.select(sa.func.count()).select_from(revoked_tokens))
        ).scalar_one()
    assert count == 2000


async def test_a_commit_survives_a_kill_before_any_checkpoint(tmp_path):
    """Durable when it returns: committed to the WAL, which the next open replays."""
    path = tmp_path / "k.db"
    script = textwrap.dedent(
        f"""
        import asyncio, os, signal
        import sqlalchemy as sa
        from gateway.storage import STORAGE, Database, migrate
        from gateway.storage.schema import revoked_tokens

        async def main():
            database = Database.open("sqlite:///{path}")
            await migrate.upgrade(database)
            async def work(connection):
                await connection.execute(
                    sa.insert(revoked_tokens).values(jti="kept", revoked_at=1.0, expires_at=2.0)
                )
            await database.write(work)
            os.kill(os.getpid(), signal.SIGKILL)

        asyncio.run(main())
        """
    )
    result = subprocess.run([sys.executable, "-c", script], check=False, timeout=60)
    assert result.returncode == -9
    assert Path(f"{path}-wal").stat().st_size > 0  # never checkpointed
    with sqlite3.connect(path) as connection:
        rows = connection.execute("SELECT jti FROM revoked_tokens").fetchall()
    assert rows == [("kept",)]


async def test_the_app_checkpoints_while_it_serves(gateway):
    database = gateway.app[STORAGE]
    size_before = _database_file_bytes(database)
    for batch in range(10):
        await _write_many(database, 200, f"b{batch}-")
    for _ in range(100):  # the checkpointer runs every 0.5 s
        if _database_file_bytes(database) > size_before + 200 * 10 * 200:
            break
        await asyncio.sleep(0.05)
    assert _database_file_bytes(database) > size_before + 200 * 10 * 200


async def test_pages_a_reader_holds_are_counted_until_it_ends(database):
    """A reader on an old snapshot keeps the WAL's later pages from being copied: the gauge
    shows them and the run counts as partial; once the reader ends, all are copied."""
    metrics = Metrics.create(version="test", commit="test")
    checkpointer = WalCheckpointer(database.path, metrics=metrics, interval_s=0.05)
    await _write_many(database, 10, "before-")
    reader = sqlite3.connect(database.path)
    reader.execute("BEGIN")
    reader.execute("SELECT count(*) FROM revoked_tokens").fetchone()  # holds this snapshot
    await _write_many(database, 400, "after-")

    def sample(name: str, **labels: str) -> float:
        value = metrics.registry.get_sample_value(name, labels)
        return value or 0.0

    async with checkpointer.running():
        while sample("gateway_storage_checkpoints_total", outcome="partial") < 1:
            await asyncio.sleep(0.02)
        assert sample("gateway_storage_wal_pages") > 0
        reader.rollback()
        reader.close()
        while sample("gateway_storage_wal_pages") > 0:
            await asyncio.sleep(0.02)
    assert sample("gateway_storage_checkpoints_total", outcome="ok") >= 1
    assert sample("gateway_storage_checkpoints_total", outcome="failed") == 0
