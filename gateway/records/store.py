"""Records and anchor batches in SQL (SQLite or PostgreSQL, the same statements)."""

from __future__ import annotations

import base64
import sqlite3
import time
from dataclasses import dataclass
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from gateway.errors import InvalidParams
from gateway.storage import Database
from gateway.storage.groupcommit import GroupCommit
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
    chain_id: int | None = None  # the network it is anchored on


def _row(record: NewRecord, now: float) -> dict[str, Any]:
    return {
        "id": record.id,
        "signer": record.signer,
        "primary_type": record.primary_type,
        "typed_data": record.typed_data.decode(),
        "signature": record.signature,
        "wallet_type": record.wallet_type,
        "private": record.private,
        "received_at": now,
        "chain_id": record.chain_id,
    }


_SQLITE_INSERT_RECORD = (
    "INSERT INTO records (id, signer, primary_type, typed_data, signature, wallet_type, "
    "private, received_at, chain_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING"
)  # no RETURNING (it doubles an insert's cost): rowcount says whether it was stored,
# lastrowid is its seq (the rowid)


def _sqlite_commit(
    db: sqlite3.Connection, group: list[NewRecord], now: float
) -> list[tuple[bool, float] | BaseException]:
    """A group's writes on SQLite, in the writer's thread: known ids are resubmissions, a
    (signer, nonce) taken before (or earlier in the group) is a DuplicateNonce, the rest are
    inserted with their readers; a record twice in the group is stored once."""
    marks = ",".join("?" * len({record.id for record in group}))
    known = dict(
        db.execute(
            f"SELECT id, received_at FROM records WHERE id IN ({marks})",  # noqa: S608  # placeholders only
            list({record.id: None for record in group}),
        ).fetchall()
    )
    outcomes: list[tuple[bool, float] | BaseException] = []
    for record in group:
        if record.id in known:  # a resubmission (or a copy stored earlier in this group)
            outcomes.append((False, float(known[record.id])))
            continue
        if record.nonce is not None:
            taken = db.execute(
                "INSERT INTO record_nonces (signer, nonce) VALUES (?, ?) ON CONFLICT DO NOTHING",
                (record.signer, record.nonce),
            ).rowcount
            if not taken:
                outcomes.append(DuplicateNonce())
                continue
        inserted = db.execute(
            _SQLITE_INSERT_RECORD,
            (
                record.id,
                record.signer,
                record.primary_type,
                record.typed_data.decode(),
                record.signature,
                record.wallet_type,
                record.private,
                now,
                record.chain_id,
            ),
        )
        known[record.id] = now
        if not inserted.rowcount:  # stored meanwhile by another writer: a resubmission
            outcomes.append((False, now))
            continue
        if record.private and record.readers:
            db.executemany(
                "INSERT INTO record_readers (record_seq, reader) VALUES (?, ?)",
                [(inserted.lastrowid, reader) for reader in record.readers],
            )
        outcomes.append((True, now))
    return outcomes


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
    if type(seq) is not int or not 0 <= seq < 2**63:  # a row number (BIGINT)
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
    """Reads on the pool; writes through one group-commit queue (see ``insert``)."""

    MAX_GROUP = 256

    def __init__(self, database: Database) -> None:
        self._db = database
        self._engine = database.engine
        self._writer = database.writer
        self._insert = sqlite_insert if database.backend == "sqlite" else pg_insert
        self._group: GroupCommit[NewRecord, tuple[bool, float]] = GroupCommit(
            self._commit_group, name="records-commit", max_group=self.MAX_GROUP
        )

    async def insert(self, record: NewRecord) -> tuple[bool, float]:
        """Store a record (with its readers and nonce), durable when this returns.

        Returns (created, received_at); a record stored before is (False, when it was
        received). Concurrent inserts share one transaction (``storage.GroupCommit``); on
        SQLite the whole group is one call in the writer's thread.
        """
        return await self._group.submit(record)

    async def _commit_group(
        self, group: list[NewRecord]
    ) -> list[tuple[bool, float] | BaseException]:
        async with self._db.operation("records.flush"):
            if self._db.sqlite_worker is not None:  # a SQLite file: one thread hop a group
                now = time.time()
                return await self._db.in_writer_thread(lambda db: _sqlite_commit(db, group, now))
            return await self._commit(group)

    async def _commit(self, group: list[NewRecord]) -> list[tuple[bool, float] | BaseException]:
        """PostgreSQL (and SQLite in memory): the same steps as ``_sqlite_commit``, through
        SQLAlchemy."""
        now = time.time()
        outcomes: list[tuple[bool, float] | BaseException | None] = [None] * len(group)
        async with self._writer.begin() as connection:
            ids = list({record.id for record in group})
            known = {
                row.id: float(row.received_at)
                for row in await connection.execute(
                    sa.select(records.c.id, records.c.received_at).where(records.c.id.in_(ids))
                )
            }
            fresh: list[int] = []
            for index, record in enumerate(group):
                if record.id in known:  # a resubmission: not a nonce reuse
                    outcomes[index] = (False, known[record.id])
                else:
                    fresh.append(index)
            with_nonce = [i for i in fresh if group[i].nonce is not None]
            if with_nonce:
                taken = await connection.execute(
                    self._insert(record_nonces)
                    .on_conflict_do_nothing()
                    .returning(record_nonces.c.signer, record_nonces.c.nonce),
                    [{"signer": group[i].signer, "nonce": group[i].nonce} for i in with_nonce],
                )
                accepted = {(row.signer, row.nonce) for row in taken}
                for i in with_nonce:
                    key = (group[i].signer, group[i].nonce)
                    if key in accepted:
                        accepted.discard(key)  # the first of the group gets it
                    else:
                        outcomes[i] = DuplicateNonce()
            rows = [i for i in fresh if outcomes[i] is None]
            if rows:
                inserted = await connection.execute(
                    self._insert(records)
                    .on_conflict_do_nothing()
                    .returning(records.c.id, records.c.seq),
                    [_row(group[i], now) for i in rows],
                )
                seqs = {row.id: row.seq for row in inserted}
                readers = []
                for i in rows:
                    record = group[i]
                    if record.id in seqs:
                        outcomes[i] = (True, now)
                        seq = seqs.pop(record.id)  # later copies in the group are duplicates
                        readers += [
                            {"record_seq": seq, "reader": reader}
                            for reader in (record.readers if record.private else ())
                        ]
                    else:  # the same record twice in this group
                        outcomes[i] = (False, now)
                if readers:
                    await connection.execute(sa.insert(record_readers), readers)
        return [outcome if outcome is not None else (False, now) for outcome in outcomes]

    async def get(self, record_id: str) -> Any:  # noqa: ANN401  # a Row
        async with self._db.operation("records.get"), self._engine.connect() as connection:
            result = await connection.execute(
                sa.select(*_COLUMNS).select_from(_JOINED).where(records.c.id == record_id)
            )
            return result.first()

    async def readers(self, seq: int) -> set[str]:
        async with self._db.operation("records.readers"), self._engine.connect() as connection:
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
        async with self._db.operation("records.page"), self._engine.connect() as connection:
            return list(await connection.execute(query))

    async def pending_count(self) -> int:
        async with (
            self._db.operation("records.pending"),
            self._engine.connect() as connection,
        ):
            result = await connection.execute(
                sa.select(sa.func.count()).select_from(records).where(records.c.batch_id.is_(None))
            )
            return int(result.scalar_one())
