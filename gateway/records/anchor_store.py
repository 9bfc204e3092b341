"""The anchoring tables: batches of records, their proofs, and who may anchor (SQL).

The anchorer decides and talks to the chain; this store owns every statement on
``anchor_batches`` and the anchoring columns of ``records`` (``batch_id``, ``proof``).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa

from gateway.storage import Database
from gateway.storage.leadership import leadership
from gateway.storage.schema import anchor_batches, records

# pg_advisory_lock key of the anchoring round.
ANCHOR_LOCK = 0x6761_7465_7761_7931  # "gateway1" (replicas of every version must agree)

# (record ids) -> (root, one JSON proof per record, in order)
Prover = Callable[[list[bytes]], tuple[bytes, list[str]]]


class AnchorStore:
    """The anchoring of one network: its records (``records.chain_id``) and batches."""

    def __init__(self, database: Database, chain_id: int, *, default: bool = True) -> None:
        self._db = database
        self._engine = database.engine
        self._writer = database.writer
        self.chain_id = chain_id
        self._default = default
        self._mine = records.c.chain_id == chain_id
        # The default network keeps the lock it had before networks (replicas agree).
        self._lock = ANCHOR_LOCK if default else ANCHOR_LOCK + chain_id

    def leadership(self) -> contextlib.AbstractAsyncContextManager[bool]:
        """One replica at a time anchors a network (see storage.leadership)."""
        return leadership(self._db, self._lock, "anchor.leadership")

    async def adopt(self) -> None:
        """The default network takes the records of no network (stored before networks,
        or while its chain id was not known yet)."""
        if not self._default:
            return
        async with self._db.operation("anchor.adopt"), self._writer.begin() as connection:
            await connection.execute(
                records.update().where(records.c.chain_id.is_(None)).values(chain_id=self.chain_id)
            )

    async def unfinished(self) -> list[int]:
        """Batches built or sent but not confirmed, oldest first."""
        async with self._db.operation("anchor.unfinished"), self._engine.connect() as connection:
            result = await connection.execute(
                sa.select(anchor_batches.c.id)
                .where(
                    anchor_batches.c.status.in_(("built", "sent")),
                    anchor_batches.c.chain_id == self.chain_id,
                )
                .order_by(anchor_batches.c.id)
            )
            return [row.id for row in result]

    async def build(  # a batch's facts
        self,
        prove: Prover,
        *,
        max_batch: int,
        min_batch: int,
        contract: str,
    ) -> tuple[int, bytes, int] | None:
        """The oldest un-anchored records (at most ``max_batch``, at least ``min_batch``)
        put into a new batch with their proofs, in one transaction: (id, root, count)."""
        async with self._db.operation("anchor.build"), self._writer.begin() as connection:
            pending = list(
                await connection.execute(
                    sa.select(records.c.seq, records.c.id)
                    .where(records.c.batch_id.is_(None), self._mine)
                    .order_by(records.c.seq)
                    .limit(max_batch)
                )
            )
            if len(pending) < min_batch or not pending:
                return None
            root, proofs = prove([bytes.fromhex(row.id[2:]) for row in pending])
            result = await connection.execute(
                sa.insert(anchor_batches).values(
                    root="0x" + root.hex(),
                    count=len(pending),
                    status="built",
                    chain_id=self.chain_id,
                    contract=contract,
                    created_at=time.time(),
                )
            )
            batch_id = int(result.inserted_primary_key[0])  # type: ignore[index]  # set by the insert
            await connection.execute(
                records.update()
                .where(records.c.seq == sa.bindparam("b_seq"))
                .values(batch_id=sa.bindparam("b_batch"), proof=sa.bindparam("b_proof")),
                [
                    {"b_seq": row.seq, "b_batch": batch_id, "b_proof": proof}
                    for row, proof in zip(pending, proofs, strict=True)
                ],
            )
        return batch_id, root, len(pending)

    async def batch(self, batch_id: int) -> Any:  # noqa: ANN401  # a Row
        async with self._db.operation("anchor.batch"), self._engine.connect() as connection:
            result = await connection.execute(
                sa.select(anchor_batches).where(anchor_batches.c.id == batch_id)
            )
            return result.one()

    async def update(self, batch_id: int, **values: Any) -> None:  # noqa: ANN401
        async with self._db.operation("anchor.update"), self._writer.begin() as connection:
            await connection.execute(
                anchor_batches.update().where(anchor_batches.c.id == batch_id).values(**values)
            )

    async def release(self, batch_id: int) -> None:
        """A batch whose transaction failed: its records go back to the queue."""
        async with self._db.operation("anchor.reverted"), self._writer.begin() as connection:
            await connection.execute(
                records.update()
                .where(records.c.batch_id == batch_id)
                .values(batch_id=None, proof=None)
            )
            await connection.execute(
                anchor_batches.update()
                .where(anchor_batches.c.id == batch_id)
                .values(status="failed")
            )

    async def pending_count(self) -> int:
        """Records not in a batch yet."""
        async with self._db.operation("anchor.gauges"), self._engine.connect() as connection:
            pending = await connection.execute(
                sa.select(sa.func.count())
                .select_from(records)
                .where(records.c.batch_id.is_(None), self._mine)
            )
            return int(pending.scalar_one())
