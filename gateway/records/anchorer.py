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
from typing import Any

import structlog
from eth_account.signers.local import LocalAccount
from opentelemetry import trace
from web3 import AsyncWeb3
from web3.exceptions import Web3Exception

from gateway.background import Rounds
from gateway.chain.artifacts import load_artifact
from gateway.chain.txsender import TxSender
from gateway.config import AnchorSettings
from gateway.records.anchor_store import AnchorStore
from gateway.records.merkle import MerkleTree, leaf_of
from gateway.storage import Database
from gateway.telemetry import Metrics
from gateway.telemetry.metrics import failures_counter

log = structlog.get_logger("gateway.anchor")


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
        default: bool = True,
    ) -> None:
        """One network's anchoring; ``metrics`` with its label. The default network's also
        anchors the records stored before networks (``AnchorStore.adopt``)."""
        self.settings = settings
        self.store = AnchorStore(database, chain_id, default=default)
        self.sender = TxSender(w3, account, chain_id)
        self.round_health = Rounds("anchoring", log, failures_counter(metrics, "anchoring"))
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
                self.round_health.succeeded()
            except Exception as exc:  # noqa: BLE001  # the loop outlives a failed round
                self.round_health.failed(exc)
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
        """The start-up round: records from before networks taken on (once), then what a
        previous process left unfinished."""
        async with self.store.leadership() as leader:
            if leader:
                await self.store.adopt()
                await self._resume()

    async def _resume(self) -> None:
        for unfinished in await self.store.unfinished():
            await self._finish(unfinished)
        await self._refresh_gauges()

    async def anchor_once(self) -> int | None:
        """Finish unfinished batches, then anchor one new batch if enough records wait.
        Returns the new batch's id (None when there was nothing to do, or when another
        replica holds the anchoring lock)."""
        async with self.store.leadership() as leader:
            if not leader:
                return None
            return await self._anchor_round()

    async def _anchor_round(self) -> int | None:
        await self._resume()
        batch_id = await self._build()
        if batch_id is not None:
            await self._finish(batch_id)
            await self._refresh_gauges()
        return batch_id

    async def _build(self) -> int | None:
        """Put the oldest un-anchored records into a new batch with their proofs."""

        def prove(ids: list[bytes]) -> tuple[bytes, list[str]]:
            with self.tracer.start_as_current_span("anchor.build") as span:
                tree = MerkleTree.build(ids)
                span.set_attribute("anchor.batch_size", len(ids))
                proofs = [
                    "[" + ",".join(f'"0x{node.hex()}"' for node in tree.proof(leaf_of(i))) + "]"
                    for i in ids
                ]
            return tree.root, proofs

        built = await self.store.build(
            prove,
            max_batch=self.settings.max_batch,
            min_batch=self.settings.min_batch,
            contract=self.contract_address,
        )
        if built is None:
            return None
        batch_id, root, count = built
        log.info("anchor batch built", batch=batch_id, root="0x" + root.hex(), count=count)
        return batch_id

    async def _finish(self, batch_id: int) -> None:
        batch = await self.store.batch(batch_id)
        with self.tracer.start_as_current_span("anchor.send") as span:
            span.set_attribute("anchor.root", batch.root)
            if batch.status == "built":  # written ahead: the signed bytes, then the send
                call = self.contract.functions.anchor(bytes.fromhex(batch.root[2:]), batch.count)
                signed = await self.sender.sign(await call.build_transaction(self.sender.base()))
                await self.store.update(
                    batch_id, status="sent", tx_hash=signed.hash, raw_tx=signed.raw
                )
                batch = await self.store.batch(batch_id)
            await self.sender.broadcast(batch.raw_tx, batch.tx_hash)
        with self.tracer.start_as_current_span("anchor.confirm"):
            await self._confirm(batch)

    async def _confirm(self, batch: Any) -> None:  # noqa: ANN401
        receipt = await self.sender.receipt(
            batch.tx_hash, timeout_s=self.settings.receipt_timeout_s
        )
        if receipt is None:
            log.warning("anchor receipt not yet available", batch=batch.id, tx_hash=batch.tx_hash)
            return  # stays "sent": the next round looks again
        if receipt["status"] != 1:
            await self._reverted(batch)
            return
        await self.store.update(
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
            await self.store.update(
                batch.id, status="confirmed", block_number=anchored[0], confirmed_at=time.time()
            )
            self.metrics.child(self.metrics.anchor_batches, "confirmed").inc()
            return
        await self.store.release(batch.id)
        self.metrics.child(self.metrics.anchor_batches, "failed").inc()
        log.error("anchor transaction reverted; records go back to the queue", batch=batch.id)

    async def _refresh_gauges(self) -> None:
        self.pending = await self.store.pending_count()
        self.metrics.records_pending_anchor.set(self.pending)
        try:
            balance = await self.w3.eth.get_balance(self.account.address)
            self.metrics.anchor_key_balance.set(balance / 10**18)
        except (Web3Exception, OSError, TimeoutError):
            pass
