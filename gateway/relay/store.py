"""The relay's tables (SQL): requests, every signed version of their transactions, the
relayer's nonce counter and the webhook outbox.

Everything the sender does is written here before it happens on chain: a transaction is
stored (signed bytes and nonce) in the same database transaction that allocates its nonce,
before it is broadcast; a status change and its webhook events are one transaction.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.chain.txsender import Signed
from gateway.storage import Database
from gateway.storage.leadership import leadership
from gateway.storage.schema import relay_requests, relay_txs, relay_webhook_events, relayer_nonces

RELAY_LOCK = 0x6761_7465_7761_7932  # "gateway2": one sender across replicas
WEBHOOK_LOCK = 0x6761_7465_7761_7933  # "gateway3": one webhook deliverer across replicas

ACTIVE = ("sent", "submitted", "mined")  # holding a relayer nonce, not final
QUEUED = ("pending", *ACTIVE)  # the signer's forwarder nonce is not used yet
FINAL = ("confirmed", "failed", "expired", "canceled")


# (relayer nonce) -> the transaction signed with it
Signer = Callable[[int], Signed]
# Webhook events of a status change: (url, JSON body)
Events = list[tuple[str, str]]


class RelayStore:
    """The relay's rows of one network (``chain_id`` on requests, transactions and the
    relayer's nonces); the webhook outbox is shared."""

    def __init__(self, database: Database, chain_id: int, *, default: bool = True) -> None:
        self._db = database
        self._engine = database.engine
        self._writer = database.writer
        self.chain_id = chain_id
        self.default = default
        self._mine = relay_requests.c.chain_id == chain_id
        # The default network keeps the lock it had before networks (replicas agree).
        self.lock = RELAY_LOCK if default else RELAY_LOCK + chain_id

    def leadership(self) -> contextlib.AbstractAsyncContextManager[bool]:
        """One sender per network across replicas."""
        return leadership(self._db, self.lock, "relay.leadership")

    async def adopt(self) -> None:
        """The default network takes the rows of no network (written before networks)."""
        if not self.default:
            return
        async with self._db.operation("relay.adopt"), self._writer.begin() as connection:
            for table in (relay_requests, relay_txs):
                await connection.execute(
                    table.update().where(table.c.chain_id.is_(None)).values(chain_id=self.chain_id)
                )
            mine = sa.select(relayer_nonces.c.relayer).where(
                relayer_nonces.c.chain_id == self.chain_id
            )
            await connection.execute(
                relayer_nonces.update()
                .where(relayer_nonces.c.chain_id == 0, relayer_nonces.c.relayer.not_in(mine))
                .values(chain_id=self.chain_id)
            )

    def _nonce_of(self, relayer: str) -> sa.ColumnElement[bool]:
        return sa.and_(
            relayer_nonces.c.chain_id == self.chain_id, relayer_nonces.c.relayer == relayer
        )

    # --- requests ---------------------------------------------------------------------

    async def insert(
        self, row: dict[str, Any], *, expected_nonce: Callable[[list[int]], int]
    ) -> tuple[Any, bool, int | None]:
        """Store a new request unless its id is known: (row, created, None). When the
        request's nonce is not the one expected after the signer's queued requests, nothing
        is stored: (None, False, the nonce expected). ``expected_nonce(queued nonces)``
        gives it; this runs in the writing transaction, one signer at a time, so two
        requests can never take the same nonce."""
        async with self._db.operation("relay.insert"), self._writer.begin() as connection:
            existing = await self._by_id(connection, row["id"])
            if existing is not None:
                return existing, False, None
            if self._db.backend == "postgresql":  # one signer at a time across replicas
                key = int(row["signer"][2:18], 16) - 2**63
                await connection.execute(sa.select(sa.func.pg_advisory_xact_lock(key)))
            expected = expected_nonce(
                await self._queued_nonces(connection, row["signer"], row["forwarder"])
            )
            if int(row["nonce"]) != expected:
                return None, False, expected
            now = time.time()
            await connection.execute(
                relay_requests.insert().values(
                    **row,
                    chain_id=self.chain_id,
                    status="pending",
                    cancel_requested=False,
                    attempts=0,
                    created_at=now,
                    updated_at=now,
                )
            )
            return await self._by_id(connection, row["id"]), True, None

    async def queued_nonces(self, signer: str, forwarder: str) -> list[int]:
        """The forwarder nonces of the signer's requests not mined yet."""
        async with self._db.operation("relay.queued"), self._engine.connect() as connection:
            return await self._queued_nonces(connection, signer, forwarder)

    async def _queued_nonces(
        self, connection: AsyncConnection, signer: str, forwarder: str
    ) -> list[int]:
        result = await connection.execute(
            sa.select(relay_requests.c.nonce).where(
                self._mine,
                relay_requests.c.signer == signer,
                relay_requests.c.forwarder == forwarder,
                relay_requests.c.status.in_(QUEUED),
            )
        )
        return [int(row.nonce) for row in result]

    async def get(self, request_id: str) -> Any:  # noqa: ANN401  # a row
        async with self._db.operation("relay.get"), self._engine.connect() as connection:
            return await self._by_id(connection, request_id)

    @staticmethod
    async def _by_id(connection: AsyncConnection, request_id: str) -> Any:  # noqa: ANN401
        result = await connection.execute(
            sa.select(relay_requests).where(relay_requests.c.id == request_id)
        )
        return result.first()

    async def page(
        self, *, signer: str | None, status: str | None, after: int, limit: int
    ) -> list[Any]:
        query = sa.select(relay_requests).where(relay_requests.c.seq > after)
        if signer is not None:
            query = query.where(relay_requests.c.signer == signer)
        if status is not None:
            query = query.where(relay_requests.c.status == status)
        async with self._db.operation("relay.page"), self._engine.connect() as connection:
            result = await connection.execute(query.order_by(relay_requests.c.seq).limit(limit))
            return list(result)

    async def pending(self, limit: int) -> list[Any]:
        """Requests not sent yet, in the order they were accepted (per signer: nonce order)."""
        async with self._db.operation("relay.pending"), self._engine.connect() as connection:
            result = await connection.execute(
                sa.select(relay_requests)
                .where(self._mine, relay_requests.c.status == "pending")
                .order_by(relay_requests.c.seq)
                .limit(limit)
            )
            return list(result)

    async def active(self) -> list[Any]:
        """Requests holding a relayer nonce and not final, in relayer-nonce order."""
        async with self._db.operation("relay.active"), self._engine.connect() as connection:
            result = await connection.execute(
                sa.select(relay_requests)
                .where(self._mine, relay_requests.c.status.in_(ACTIVE))
                .order_by(relay_requests.c.relayer_nonce)
            )
            return list(result)

    async def counts(self) -> dict[str, int]:
        async with self._db.operation("relay.counts"), self._engine.connect() as connection:
            result = await connection.execute(
                sa.select(relay_requests.c.status, sa.func.count())
                .where(self._mine)
                .group_by(relay_requests.c.status)
            )
            return {row[0]: int(row[1]) for row in result}

    async def oldest_unfinished(self) -> float | None:
        async with self._db.operation("relay.oldest"), self._engine.connect() as connection:
            oldest: float | None = (
                await connection.execute(
                    sa.select(sa.func.min(relay_requests.c.created_at)).where(
                        self._mine, relay_requests.c.status.in_(QUEUED)
                    )
                )
            ).scalar_one()
            return oldest

    async def request_cancel(self, request_id: str) -> Any:  # noqa: ANN401
        """Mark a request to be cancelled; the sender cancels it (a pending one at once)."""
        async with self._db.operation("relay.cancel"), self._writer.begin() as connection:
            await connection.execute(
                relay_requests.update()
                .where(relay_requests.c.id == request_id, relay_requests.c.status.in_(QUEUED))
                .values(cancel_requested=True, updated_at=time.time())
            )
            return await self._by_id(connection, request_id)

    async def set_status(
        self,
        request_id: str,
        status: str,
        events: Events,
        **fields: Any,  # noqa: ANN401  # column values
    ) -> None:
        """A status change and its webhook events, in one transaction."""
        await self.set_statuses([(request_id, status, events, fields)])

    async def set_statuses(self, changes: list[tuple[str, str, Events, dict[str, Any]]]) -> None:
        """Several (request id, status, events, fields) changes in one transaction."""
        now = time.time()
        async with self._db.operation("relay.statuses"), self._writer.begin() as connection:
            for request_id, status, events, fields in changes:
                await connection.execute(
                    relay_requests.update()
                    .where(relay_requests.c.id == request_id)
                    .values(status=status, updated_at=now, **fields)
                )
                await self._enqueue(connection, events, now)

    # --- transactions -----------------------------------------------------------------

    async def send_new(
        self, batch: list[tuple[str, Signer, Events]], relayer: str, *, head: int
    ) -> list[Signed]:
        """For each (request id, signer, events), in order: allocate the relayer's next
        nonce, sign the request's transaction with it, store both and mark the request
        ``sent``; all in one transaction, before any broadcast."""
        now = time.time()
        signed_all = []
        async with self._db.operation("relay.send_new"), self._writer.begin() as connection:
            first = await self._take_nonce(connection, relayer, take=False)
            for offset, (request_id, sign, events) in enumerate(batch):
                nonce = first + offset
                signed = sign(nonce)
                await self._insert_tx(
                    connection, signed, request_id, relayer, nonce=nonce, kind="new", now=now
                )
                await connection.execute(
                    relay_requests.update()
                    .where(relay_requests.c.id == request_id)
                    .values(
                        status="sent",
                        relayer_nonce=nonce,
                        tx_hash=signed.hash,
                        attempts=relay_requests.c.attempts + 1,
                        sent_block=head,
                        updated_at=now,
                    )
                )
                await self._enqueue(connection, events, now)
                signed_all.append(signed)
            await connection.execute(
                relayer_nonces.update()
                .where(self._nonce_of(relayer))
                .values(next_nonce=first + len(batch))
            )
        return signed_all

    async def mark_submitted(self, batch: list[tuple[str, Events]]) -> None:
        """Requests whose transactions were broadcast, and their events, in one transaction."""
        now = time.time()
        async with self._db.operation("relay.submitted"), self._writer.begin() as connection:
            await connection.execute(
                relay_requests.update()
                .where(relay_requests.c.id.in_([request_id for request_id, _ in batch]))
                .values(status="submitted", updated_at=now)
            )
            await self._enqueue(connection, [event for _, events in batch for event in events], now)

    async def replace(  # noqa: PLR0913  # one write-ahead step
        self,
        request_id: str | None,
        relayer: str,
        nonce: int,
        signed: Signed,
        *,
        kind: str,
        head: int,
    ) -> None:
        """Store a replacement (a fee bump or a no-op) of ``nonce`` before it is broadcast."""
        now = time.time()
        async with self._db.operation("relay.replace"), self._writer.begin() as connection:
            await self._insert_tx(
                connection, signed, request_id, relayer, nonce=nonce, kind=kind, now=now
            )
            if request_id is not None:
                await connection.execute(
                    relay_requests.update()
                    .where(relay_requests.c.id == request_id)
                    .values(
                        tx_hash=signed.hash,
                        attempts=relay_requests.c.attempts + 1,
                        sent_block=head,
                        updated_at=now,
                    )
                )

    async def versions(self, request_id: str) -> list[Any]:
        """Every transaction signed for the request, oldest first."""
        async with self._db.operation("relay.versions"), self._engine.connect() as connection:
            result = await connection.execute(
                sa.select(relay_txs)
                .where(relay_txs.c.request_id == request_id)
                .order_by(relay_txs.c.created_at)
            )
            return list(result)

    async def versions_of(self, request_ids: list[str]) -> dict[str, list[Any]]:
        """``versions`` of many requests in one query."""
        found: dict[str, list[Any]] = {request_id: [] for request_id in request_ids}
        async with self._db.operation("relay.versions"), self._engine.connect() as connection:
            result = await connection.execute(
                sa.select(relay_txs)
                .where(relay_txs.c.request_id.in_(request_ids))
                .order_by(relay_txs.c.created_at)
            )
            for row in result:
                found[row.request_id].append(row)
        return found

    async def reconcile_nonce(self, relayer: str, chain_next: int) -> tuple[int, list[int]]:
        """Bring the counter to the chain: never below the chain's count (a transaction of
        this key sent elsewhere moves it up). Returns the counter and the nonces in
        [chain_next, counter) that no stored transaction holds (to be filled by no-ops)."""
        async with self._db.operation("relay.reconcile"), self._writer.begin() as connection:
            current = await self._take_nonce(connection, relayer, take=False)
            counter = max(current, chain_next)
            await connection.execute(
                relayer_nonces.update().where(self._nonce_of(relayer)).values(next_nonce=counter)
            )
            held = {
                row.relayer_nonce
                for row in await connection.execute(
                    sa.select(relay_txs.c.relayer_nonce).where(
                        relay_txs.c.chain_id == self.chain_id,
                        relay_txs.c.relayer == relayer,
                        relay_txs.c.relayer_nonce >= chain_next,
                    )
                )
            }
            return counter, [n for n in range(chain_next, counter) if n not in held]

    async def release(self, request_id: str, relayer: str, chain_next: int) -> None:
        """A request whose nonce was taken by a transaction not of the relay (the node said
        "nonce too low" and none of its versions is mined): back to ``pending``, to be sent
        again with a nonce the chain has not used."""
        async with self._db.operation("relay.release"), self._writer.begin() as connection:
            await connection.execute(
                relay_requests.update()
                .where(relay_requests.c.id == request_id)
                .values(status="pending", relayer_nonce=None, tx_hash=None, updated_at=time.time())
            )
            await connection.execute(relay_txs.delete().where(relay_txs.c.request_id == request_id))
            current = await self._take_nonce(connection, relayer, take=False)
            await connection.execute(
                relayer_nonces.update()
                .where(self._nonce_of(relayer))
                .values(next_nonce=max(current, chain_next))
            )

    async def _take_nonce(
        self, connection: AsyncConnection, relayer: str, *, take: bool = True
    ) -> int:
        query = sa.select(relayer_nonces.c.next_nonce).where(self._nonce_of(relayer))
        if self._db.backend == "postgresql":
            query = query.with_for_update()
        current = (await connection.execute(query)).scalar_one_or_none()
        if current is None:
            current = 0
            await connection.execute(
                relayer_nonces.insert().values(
                    chain_id=self.chain_id, relayer=relayer, next_nonce=0
                )
            )
        if take:
            await connection.execute(
                relayer_nonces.update()
                .where(self._nonce_of(relayer))
                .values(next_nonce=current + 1)
            )
        return int(current)

    async def _insert_tx(  # noqa: PLR0913  # one row
        self,
        connection: AsyncConnection,
        signed: Signed,
        request_id: str | None,
        relayer: str,
        *,
        nonce: int,
        kind: str,
        now: float,
    ) -> None:
        await connection.execute(
            relay_txs.insert().values(
                hash=signed.hash,
                request_id=request_id,
                relayer=relayer,
                relayer_nonce=nonce,
                kind=kind,
                raw=signed.raw,
                max_fee=str(signed.max_fee),
                priority_fee=str(signed.priority_fee),
                created_at=now,
                chain_id=self.chain_id,
            )
        )

    # --- webhook outbox ---------------------------------------------------------------

    @staticmethod
    async def _enqueue(connection: AsyncConnection, events: Events, now: float) -> None:
        if events:
            await connection.execute(
                relay_webhook_events.insert(),
                [
                    {"url": url, "body": body, "attempts": 0, "next_attempt_at": now}
                    for url, body in events
                ],
            )


class WebhookOutbox:
    """The webhook events every network's relay enqueues (``RelayStore._enqueue``, in the
    transaction of the status change), and their delivery state; one deliverer at a time
    across replicas."""

    def __init__(self, database: Database) -> None:
        self._db = database
        self._engine = database.engine
        self._writer = database.writer

    def leadership(self) -> contextlib.AbstractAsyncContextManager[bool]:
        return leadership(self._db, WEBHOOK_LOCK, "relay.leadership")

    async def due_events(self, now: float, limit: int = 50) -> list[Any]:
        async with self._db.operation("relay.webhooks"), self._engine.connect() as connection:
            result = await connection.execute(
                sa.select(relay_webhook_events)
                .where(
                    relay_webhook_events.c.delivered_at.is_(None),
                    relay_webhook_events.c.next_attempt_at <= now,
                )
                .order_by(relay_webhook_events.c.id)
                .limit(limit)
            )
            return list(result)

    async def events_attempted(self, outcomes: list[tuple[int, bool, float, str | None]]) -> None:
        """(event id, delivered, next attempt at, error) of a round of deliveries."""
        now = time.time()
        async with self._db.operation("relay.webhook"), self._writer.begin() as connection:
            for event_id, delivered, next_attempt_at, error in outcomes:
                await connection.execute(
                    relay_webhook_events.update()
                    .where(relay_webhook_events.c.id == event_id)
                    .values(
                        attempts=relay_webhook_events.c.attempts + 1,
                        delivered_at=now if delivered else None,
                        next_attempt_at=next_attempt_at,
                        last_error=error,
                    )
                )
