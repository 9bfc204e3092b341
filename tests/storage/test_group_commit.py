"""Group commit on SQLite: concurrent writes share a transaction, one failing undoes only
itself, and every write is committed when its caller gets the result."""

import asyncio

import sqlalchemy as sa

from gateway.storage.schema import revoked_tokens


def _insert(jti: str):
    async def work(connection):
        await connection.execute(
            sa.insert(revoked_tokens).values(jti=jti, revoked_at=1.0, expires_at=2.0)
        )
        return jti

    return work


async def test_a_failing_write_undoes_only_itself(database):
    await database.write(_insert("taken"))
    results = await asyncio.gather(
        database.write(_insert("a")),
        database.write(_insert("taken")),
        database.write(_insert("b")),
        return_exceptions=True,
    )
    assert results[0] == "a"
    assert isinstance(results[1], sa.exc.IntegrityError)
    assert results[2] == "b"
    async with database.engine.connect() as connection:  # committed, seen by a reader
        rows = {row.jti for row in await connection.execute(sa.select(revoked_tokens.c.jti))}
    assert rows == {"taken", "a", "b"}


async def test_many_concurrent_writes_are_all_committed(database):
    results = await asyncio.gather(*(database.write(_insert(f"t{i}")) for i in range(500)))
    assert results == [f"t{i}" for i in range(500)]
    async with database.engine.connect() as connection:
        count = (
            await connection.execute(sa.select(sa.func.count()).select_from(revoked_tokens))
        ).scalar_one()
    assert count == 500
