"""Identity state behind a narrow interface: sign-in nonces and revoked tokens.

The SQL implementation serves SQLite and PostgreSQL with the same statements; a Redis one
can stand beside it (issue, consume-once, revoke, is-revoked, purge).
"""

from __future__ import annotations

import contextlib
import enum
from typing import Protocol

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.storage import Database
from gateway.storage.schema import revoked_tokens, siwe_nonces


class NonceState(enum.Enum):
    CONSUMED = "consumed"  # it was ours, fresh and unused: now it is used
    UNKNOWN = "unknown"
    REUSED = "reused"
    EXPIRED = "expired"


class IdentityStore(Protocol):
    async def issue_nonce(
        self, nonce: str, *, client: str, now: float, expires_at: float, max_outstanding: int
    ) -> bool:
        """Store a fresh nonce; False (nothing stored) when ``client`` already holds
        ``max_outstanding`` unexpired, unused nonces."""
        ...

    async def consume_nonce(self, nonce: str, *, now: float) -> NonceState:
        """Mark the nonce used, atomically: of concurrent calls, one gets CONSUMED."""
        ...

    async def revoke(self, jti: str, *, now: float, expires_at: float) -> None: ...

    async def is_revoked(self, jti: str) -> bool: ...

    async def purge(self, *, now: float) -> int:
        """Drop expired nonces and revocations; returns how many rows went."""
        ...


def _issue(nonce: str, client: str, now: float, expires_at: float, cap: int) -> sa.Insert:
    """One statement: insert the nonce only while the client holds fewer than ``cap``
    (no window between counting and inserting)."""
    table = siwe_nonces
    outstanding = (
        sa.select(sa.func.count())
        .where(table.c.client == client, table.c.used_at.is_(None), table.c.expires_at > now)
        .scalar_subquery()
    )
    row = sa.select(
        sa.literal(nonce, sa.String),
        sa.literal(client, sa.String),
        sa.literal(now, sa.Float),
        sa.literal(expires_at, sa.Float),
    ).where(outstanding < cap)
    return sa.insert(table).from_select(["nonce", "client", "issued_at", "expires_at"], row)


class SqlIdentityStore:
    """IdentityStore on the gateway's database (SQLite or PostgreSQL)."""

    def __init__(self, database: Database) -> None:
        self._db = database
        self._engine = database.engine
        self._writer = database.writer

    async def issue_nonce(
        self, nonce: str, *, client: str, now: float, expires_at: float, max_outstanding: int
    ) -> bool:
        statement = _issue(nonce, client, now, expires_at, max_outstanding)

        async def issue(connection: AsyncConnection) -> bool:
            return (await connection.execute(statement)).rowcount == 1

        async with self._db.operation("identity.issue_nonce"):
            return await self._db.write(issue)

    async def consume_nonce(self, nonce: str, *, now: float) -> NonceState:
        table = siwe_nonces
        claim = (
            sa.update(table)
            .where(table.c.nonce == nonce, table.c.used_at.is_(None), table.c.expires_at > now)
            .values(used_at=now)
        )

        async def consume(connection: AsyncConnection) -> NonceState:
            if (await connection.execute(claim)).rowcount == 1:
                return NonceState.CONSUMED
            row = (
                await connection.execute(
                    sa.select(table.c.used_at, table.c.expires_at).where(table.c.nonce == nonce)
                )
            ).first()
            if row is None:
                return NonceState.UNKNOWN
            return NonceState.REUSED if row.used_at is not None else NonceState.EXPIRED

        async with self._db.operation("identity.consume_nonce"):
            return await self._db.write(consume)

    async def revoke(self, jti: str, *, now: float, expires_at: float) -> None:
        table = revoked_tokens
        insert = sa.insert(table).values(jti=jti, revoked_at=now, expires_at=expires_at)

        async def revoke(connection: AsyncConnection) -> None:
            await connection.execute(insert)

        with contextlib.suppress(sa.exc.IntegrityError):  # revoked already: nothing to do
            async with self._db.operation("identity.revoke"):
                await self._db.write(revoke)

    async def is_revoked(self, jti: str) -> bool:
        table = revoked_tokens
        async with self._db.operation("identity.is_revoked"), self._engine.connect() as connection:
            result = await connection.execute(sa.select(table.c.jti).where(table.c.jti == jti))
            return result.first() is not None

    async def purge(self, *, now: float) -> int:
        async with self._db.operation("identity.purge"), self._writer.begin() as connection:
            nonces = await connection.execute(
                sa.delete(siwe_nonces).where(siwe_nonces.c.expires_at < now)
            )
            tokens = await connection.execute(
                sa.delete(revoked_tokens).where(revoked_tokens.c.expires_at < now)
            )
        return nonces.rowcount + tokens.rowcount
