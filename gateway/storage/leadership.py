"""One replica at a time for work that must not run twice (anchoring, relaying).

On PostgreSQL: a session advisory lock held while the block runs. A replica that dies loses
its connection and with it the lock, so another replica's next round takes over and resumes
what was left. SQLite has a single process: it always leads.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import sqlalchemy as sa

from gateway.storage.database import Database


@contextlib.asynccontextmanager
async def leadership(database: Database, key: int, operation: str) -> AsyncIterator[bool]:
    """Yields whether this process holds ``key`` (a pg_advisory_lock key) for the block."""
    if database.backend != "postgresql":
        yield True
        return
    async with database.operation(operation), database.writer.connect() as connection:
        took = (await connection.execute(sa.select(sa.func.pg_try_advisory_lock(key)))).scalar_one()
        await connection.commit()
        try:
            yield bool(took)
        finally:
            if took:
                # A dead connection took the lock with it: nothing to release then.
                with contextlib.suppress(sa.exc.DBAPIError):
                    await connection.execute(sa.select(sa.func.pg_advisory_unlock(key)))
                    await connection.commit()
