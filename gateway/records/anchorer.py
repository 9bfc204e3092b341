"""The anchorer: batches un-anchored records into a Merkle tree and anchors its root.

Crash safety rests on writing ahead: a batch is stored (status ``built``, with every
record's proof) before anything is signed; the signed transaction is stored (``sent``,
with its hash and raw bytes) before it is broadcast; the receipt is stored last
(``confirmed``). On start, and before each new batch, unfinished batches resume: a
``built`` batch is signed and sent, a ``sent`` one is looked up by hash and, if the node
does not know it, the same raw transaction is broadcast again. The same bytes have the same
hash and nonce, so a batch is never anchored twice and never lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import sqlalchemy as sa
import structlog
from eth_account.signers.local import LocalAccount
from opentelemetry import trace
from web3 import AsyncWeb3
from web3.exceptions import TimeExhausted, TransactionNotFound, Web3Exception

from gateway.chain.artifacts import load_artifact
from gateway.config import AnchorSettings
from gateway.records.merkle import MerkleTree
from gateway.storage import Database
from gateway.storage.schema import anchor_batches, records
from gateway.telemetry import Metrics

log = structlog.get_logger("gateway.anchor")

# pg advisory lock key of the anchoring round (any constant unique to this use).
ANCHOR_LOCK = 0x6761_7465_7761_7931  # "gateway1"


class Anchorer:
    def __init__(  # noqa: PLR0913  # the collaborators of anchoring
        self,
        settings: AnchorSettings,
        *,
        database: Database,
        w3: AsyncWeb3[Any],
        account: LocalAccount,
        contract: str,
        chain_id: int,
        metrics: Metrics,
        tracer: trace.Tracer,
    ) -> None:
        self.settings = settings
        self._db = database
        self._engine = database.engine
        self._writer = database.writer
        self._backend = database.backend
        self.w3 = w3
        self.account = account
        self.contract_address = AsyncWeb3.to_checksum_address(contract)
        self.contract = w3.eth.contract(
            address=self.contract_address, abi=load_artifact("MerkleAnchor")["abi"]
        )
        self.chain_id = chain_id
        self.metrics = metrics
        self.tracer = tracer
        self.wake = asyncio.Event()
        self.resumed = asyncio.Event()  # the start-up round (resume) is over
        for outcome in ("confirmed", "failed", "error"):
            metrics.anchor_batches.labels(outcome)
        self.pending = 0  # records not in a batch (refreshed from storage each round)

    async def run_forever(self) -> None:
        """Resume what a previous process left unfinished at once; then a new batch every
        ``interval_s``, or sooner when ``max_batch`` records wait (``wake``)."""
        first = True
        while True:
            if not first:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.settings.interval_s):
                        await self.wake.wait()
                self.wake.clear()
            try:
                if first:
                    await self.resume()
                else:
                    await self.anchor_once()
            except Exception:  # the loop outlives a failed round
                log.exception("anchoring round failed")
                self.metrics.child(self.metrics.anchor_batches, "error").inc()
            first = False
            self.resumed.set()

    def note_new_record(self) -> None:
        """A record was stored: count it, and start a batch early once enough wait."""
        self.pending += 1
        self.metrics.records_pending_anchor.set(self.pending)
        if self.pending >= self.settings.max_batch:
            self.wake.set()

    async def resume(self) -> None:
        async with self._leadership() as leader:
            if leader:
                await self._resume()

    async def _resume(self) -> None:
        for unfinished in await self._unfinished():
            await self._finish(unfinished)
        await self._refresh_gauges()

    async def anchor_once(self) -> int | None:
        """Finish unfinished batches, then anchor one new batch if enough records wait.
        Returns the new batch's id (None when there was nothing to do, or when another
        replica holds the anchoring lock)."""
        async with self._leadership() as leader:
            if not leader:
                return None
            return await self._anchor_round()

    @contextlib.asynccontextmanager
    async def _leadership(self) -> AsyncIterator[bool]:
        """On PostgreSQL, one replica at a time anchors: a session advisory lock held for
        the round. A replica that dies loses its connection and with it the lock, so the
        next round of another replica takes over (and resumes what was left unfinished).
        SQLite has a single process: it always leads."""
        if self._backend != "postgresql":
            yield True
            return
        async with self._db.operation("anchor.leadership"), self._writer.connect() as connection:
            took = (
                await connection.execute(sa.select(sa.func.pg_try_advisory_lock(ANCHOR_LOCK)))
            ).scalar_one()
            await connection.commit()
            try:
                yield bool(took)
            finally:
                if took:
                    # A dead connection took the lock with it: nothing to release then.
                    with contextlib.suppress(sa.exc.DBAPIError):
                        await connection.execute(sa.select(sa.func.pg_advisory_unlock(ANCHOR_LOCK)))
                        await connection.commit()

    async def _anchor_round(self) -> int | None:
        await self._resume()
        batch_id = await self._build()
        if batch_id is not None:
            await self._finish(batch_id)
            await self._refresh_gauges()
        return batch_id

    async def _unfinished(self) -> list[int]:
        async with self._db.operation("anchor.unfinished"), self._engine.connect() as connection:
            result = await connection.execute(
                sa.select(anchor_batches.c.id)
                .where(anchor_batches.c.status.in_(("built", "sent")))
                .order_by(anchor_batches.c.id)
            )
            return [row.id for row in result]

    async def _build(self) -> int | None:
        """Put the oldest un-anchored records into a new batch with their proofs."""
        async with self._db.operation("anchor.build"), self._writer.begin() as connection:
            pending = list(
                await connection.execute(
                    sa.select(records.c.seq, records.c.id)
                    .where(records.c.batch_id.is_(None))
                    .order_by(records.c.seq)
                    .limit(self.settings.max_batch)
                )
            )
            if len(pending) < self.settings.min_batch or not pending:
                return None
            with self.tracer.start_as_current_span("anchor.build") as span:
                ids = [bytes.fromhex(row.id[2:]) for row in pending]
                tree = MerkleTree.build(ids)
                span.set_attribute("anchor.batch_size", len(ids))
            result = await connection.execute(
                sa.insert(anchor_batches).values(
                    root="0x" + tree.root.hex(),
                    count=len(ids),
                    status="built",
                    chain_id=self.chain_id,
                    contract=self.contract_address,
                    created_at=time.time(),
                )
            )
            batch_id = int(result.inserted_primary_key[0])  # type: ignore[index]  # set by the insert
            from gateway.records.merkle import leaf_of  # noqa: PLC0415

            updates = []
            for row, record_id in zip(pending, ids, strict=True):
                leaf = leaf_of(record_id)
                proof = "[" + ",".join(f'"0x{node.hex()}"' for node in tree.proof(leaf)) + "]"
                updates.append({"b_seq": row.seq, "b_batch": batch_id, "b_proof": proof})
            await connection.execute(
                records.update()
                .where(records.c.seq == sa.bindparam("b_seq"))
                .values(batch_id=sa.bindparam("b_batch"), proof=sa.bindparam("b_proof")),
                updates,
            )
        log.info("anchor batch built", batch=batch_id, root="0x" + tree.root.hex(), count=len(ids))
        return batch_id

    async def _batch(self, batch_id: int) -> Any:  # noqa: ANN401
        async with self._db.operation("anchor.batch"), self._engine.connect() as connection:
            result = await connection.execute(
                sa.select(anchor_batches).where(anchor_batches.c.id == batch_id)
            )
            return result.one()

    async def _update(self, batch_id: int, **values: Any) -> None:  # noqa: ANN401
        async with self._db.operation("anchor.update"), self._writer.begin() as connection:
            await connection.execute(
                anchor_batches.update().where(anchor_batches.c.id == batch_id).values(**values)
            )

    async def _finish(self, batch_id: int) -> None:
        batch = await self._batch(batch_id)
        with self.tracer.start_as_current_span("anchor.send") as span:
            span.set_attribute("anchor.root", batch.root)
            if batch.status == "built":
                raw, tx_hash = await self._sign(batch)
                await self._update(batch_id, status="sent", tx_hash=tx_hash, raw_tx=raw)
                batch = await self._batch(batch_id)
            await self._broadcast(batch)
        with self.tracer.start_as_current_span("anchor.confirm"):
            await self._confirm(batch)

    async def _sign(self, batch: Any) -> tuple[str, str]:  # noqa: ANN401
        root = bytes.fromhex(batch.root[2:])
        nonce = await self.w3.eth.get_transaction_count(self.account.address, "pending")
        tx = await self.contract.functions.anchor(root, batch.count).build_transaction(
            {
                "from": self.account.address,
                "nonce": nonce,
                "chainId": self.chain_id,
            }
        )
        signed = self.account.sign_transaction(dict(tx))  # type: ignore[arg-type]  # TxParams is a dict
        return "0x" + bytes(signed.raw_transaction).hex(), "0x" + bytes(signed.hash).hex()

    async def _broadcast(self, batch: Any) -> None:  # noqa: ANN401
        try:
            await self.w3.eth.get_transaction(batch.tx_hash)
        except TransactionNotFound:
            pass
        else:
            return  # the node has it (pending or mined): never send twice
        try:
            await self.w3.eth.send_raw_transaction(batch.raw_tx)
            log.info("anchor transaction sent", batch=batch.id, tx_hash=batch.tx_hash)
        except (Web3Exception, ValueError) as exc:
            # "already known" / "nonce too low": the same bytes reached the node before.
            log.warning("anchor broadcast refused", batch=batch.id, error=str(exc)[:200])

    async def _confirm(self, batch: Any) -> None:  # noqa: ANN401
        try:
            receipt = await self.w3.eth.wait_for_transaction_receipt(
                batch.tx_hash, timeout=self.settings.receipt_timeout_s, poll_latency=0.1
            )
        except TimeExhausted:
            log.warning("anchor receipt not yet available", batch=batch.id, tx_hash=batch.tx_hash)
            return  # stays "sent": the next round looks again
        if receipt["status"] != 1:
            await self._reverted(batch)
            return
        await self._update(
            batch.id,
            status="confirmed",
            block_number=receipt["blockNumber"],
            gas_used=receipt["gasUsed"],
            confirmed_at=time.time(),
        )
        self.metrics.child(self.metrics.anchor_batches, "confirmed").inc()
        self.metrics.anchor_batch_size.observe(batch.count)
        self.metrics.anchor_gas_used.inc(receipt["gasUsed"])
        self.metrics.anchor_last_success.set(time.time())
        log.info(
            "anchor batch confirmed",
            batch=batch.id,
            root=batch.root,
            count=batch.count,
            tx_hash=batch.tx_hash,
            block=receipt["blockNumber"],
            gas=receipt["gasUsed"],
        )

    async def _reverted(self, batch: Any) -> None:  # noqa: ANN401
        anchored = await self.contract.functions.anchors(bytes.fromhex(batch.root[2:])).call()
        if anchored[0] != 0:  # already anchored (by an earlier transaction of this root)
            await self._update(
                batch.id, status="confirmed", block_number=anchored[0], confirmed_at=time.time()
            )
            self.metrics.child(self.metrics.anchor_batches, "confirmed").inc()
            return
        async with self._db.operation("anchor.reverted"), self._writer.begin() as connection:
            await connection.execute(
                records.update()
                .where(records.c.batch_id == batch.id)
                .values(batch_id=None, proof=None)
            )
            await connection.execute(
                anchor_batches.update()
                .where(anchor_batches.c.id == batch.id)
                .values(status="failed")
            )
        self.metrics.child(self.metrics.anchor_batches, "failed").inc()
        log.error("anchor transaction reverted; records go back to the queue", batch=batch.id)

    async def _refresh_gauges(self) -> None:
        async with (
            self._db.operation("anchor.gauges"),
            self._engine.connect() as connection,
        ):
            pending = await connection.execute(
                sa.select(sa.func.count()).select_from(records).where(records.c.batch_id.is_(None))
            )
            self.pending = int(pending.scalar_one())
            self.metrics.records_pending_anchor.set(self.pending)
        try:
            balance = await self.w3.eth.get_balance(self.account.address)
            self.metrics.anchor_key_balance.set(balance / 10**18)
        except (Web3Exception, OSError, TimeoutError):
            pass
