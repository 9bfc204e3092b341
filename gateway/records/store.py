"""Records and anchor batches in SQL (SQLite or PostgreSQL, the same statements)."""

from __future__ import annotations

import base64
import time
from dataclasses import dataclass
from typing import Any

import orjson
import sqlalchemy as sa

from gateway.errors import InvalidParams
from gateway.storage import Database, storage_errors
from gateway.storage.schema import anchor_batches, record_nonces, record_readers, records


@dataclass(frozen=True, slots=True)
class NewRecord:
    id: str
    signer: str
    primary_type: str
    typed_data: bytes
    signature: str
    wallet_type: str
    private: bool
    readers: set[str]
    nonce: str | None  # stored (signer, nonce) must be fresh when set


class DuplicateNonce(Exception):
    """The (signer, nonce) pair was used by another record."""


class BadCursor(InvalidParams):
    code = "records.bad_cursor"
    default_message = "cursor is not one this API gave out"


def encode_cursor(seq: int) -> str:
    return base64.urlsafe_b64encode(orjson.dumps({"s": seq})).rstrip(b"=").decode()


def decode_cursor(cursor: str) -> int:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        seq = orjson.loads(base64.urlsafe_b64decode(padded.encode()))["s"]
    except (ValueError, KeyError, TypeError, orjson.JSONDecodeError) as exc:
        raise BadCursor from exc
    if not isinstance(seq, int) or seq < 0:
        raise BadCursor
    return seq


_COLUMNS = [
    records.c.seq,
    records.c.id,
    records.c.signer,
    records.c.primary_type,
    records.c.typed_data,
    records.c.signature,
    records.c.wallet_type,
    records.c.private,
    records.c.received_at,
    records.c.leaf_index,
    records.c.proof,
    anchor_batches.c.root,
    anchor_batches.c.status,
    anchor_batches.c.tx_hash,
    anchor_batches.c.block_number,
    anchor_batches.c.contract,
    anchor_batches.c.chain_id,
]
_JOINED = records.outerjoin(anchor_batches, records.c.batch_id == anchor_batches.c.id)


class RecordStore:
    def __init__(self, database: Database) -> None:
        self._engine = database.engine
        self._writer = database.writer
        self._sqlite = database.backend == "sqlite"

    async def insert(self, record: NewRecord) -> tuple[bool, float]:
        """Store a record (with its readers and nonce) in one transaction, durable when
        this returns. Returns (created, received_at); a record stored before is
        (False, when it was received)."""
        now = time.time()
        async with storage_errors():
            if record.nonce is not None:  # a resubmission must not look like a nonce reuse
                existing = await self.get(record.id)
                if existing is not None:
                    return False, float(existing.received_at)
            try:
                async with self._writer.begin() as connection:
                    if record.nonce is not None:
                        try:
                            async with connection.begin_nested():
                                await connection.execute(
                                    sa.insert(record_nonces).values(
                                        signer=record.signer, nonce=record.nonce
                                    )
                                )
                        except sa.exc.IntegrityError as exc:
                            raise DuplicateNonce from exc
                    result = await connection.execute(
                        sa.insert(records).values(
                            id=record.id,
                            signer=record.signer,
                            primary_type=record.primary_type,
                            typed_data=record.typed_data.decode(),
                            signature=record.signature,
                            wallet_type=record.wallet_type,
                            private=record.private,
                            received_at=now,
                        )
                    )
                    seq = result.inserted_primary_key[0]  # type: ignore[index]  # set by the insert
                    if record.private:
                        await connection.execute(
                            sa.insert(record_readers),
                            [{"record_seq": seq, "reader": reader} for reader in record.readers],
                        )
            except sa.exc.IntegrityError:  # the same record, stored before or concurrently
                existing = await self.get(record.id)
                if existing is None:
                    raise
                return False, float(existing.received_at)
        return True, now

    async def get(self, record_id: str) -> Any:  # noqa: ANN401  # a Row
        async with storage_errors(), self._engine.connect() as connection:
            result = await connection.execute(
                sa.select(*_COLUMNS).select_from(_JOINED).where(records.c.id == record_id)
            )
            return result.first()

    async def readers(self, seq: int) -> set[str]:
        async with storage_errors(), self._engine.connect() as connection:
            result = await connection.execute(
                sa.select(record_readers.c.reader).where(record_readers.c.record_seq == seq)
            )
            return {row.reader for row in result}

    async def page(
        self,
        *,
        signer: str | None,
        primary_type: str | None,
        after: int,
        limit: int,
        reader: str | None,
    ) -> list[Any]:
        """Records after ``after`` in insertion order. ``reader``: the caller's address,
        which may see private records it signed or is a reader of (None: public only)."""
        query = sa.select(*_COLUMNS).select_from(_JOINED).where(records.c.seq > after)
        if signer is not None:
            query = query.where(records.c.signer == signer)
        if primary_type is not None:
            query = query.where(records.c.primary_type == primary_type)
        if reader is None:
            query = query.where(records.c.private.is_(False))
        else:
            readable = sa.exists().where(
                record_readers.c.record_seq == records.c.seq, record_readers.c.reader == reader
            )
            query = query.where(sa.or_(records.c.private.is_(False), readable))
        query = query.order_by(records.c.seq).limit(limit)
        async with storage_errors(), self._engine.connect() as connection:
            return list(await connection.execute(query))

    async def pending_count(self) -> int:
        async with storage_errors(), self._engine.connect() as connection:
            result = await connection.execute(
                sa.select(sa.func.count()).select_from(records).where(records.c.batch_id.is_(None))
            )
            return int(result.scalar_one())
