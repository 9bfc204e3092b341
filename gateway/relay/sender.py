"""The relay's sender: accepted requests go on chain, in order, exactly once, and stay safe
across crashes, fee spikes and several replicas.

Each round (one replica at a time, under an advisory lock on PostgreSQL):

1. The relayer's nonce counter is brought to the chain: never below the chain's count, and a
   nonce that no stored transaction holds is filled by a no-op, so the counter cannot run
   ahead of the chain and jam every later transaction.
2. Pending requests are signed with the next nonce and stored (write-ahead, one database
   transaction), then broadcast. A request of one signer is sent after the ones before it.
3. Sent requests are watched: a receipt of any stored version settles the request; a
   transaction not mined within ``bump_after_blocks`` is replaced with the same nonce and
   higher fees (at the ceiling it waits, and ``gateway_relay_at_fee_ceiling`` says so), but
   not in the round that had to send it again because the node did not have it (its first
   broadcast failed, or the node dropped it): that one gets a round to be mined first; an
   expired or cancelled request still holding a nonce is replaced by a zero-value no-op.

After a crash nothing is decided twice: a stored transaction is broadcast again with its
very bytes (same hash, same nonce), and a mined one is found by its receipt.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Any

import structlog
from eth_account.signers.local import LocalAccount
from opentelemetry import trace
from opentelemetry.trace import Link
from web3 import AsyncWeb3
from web3.contract import AsyncContract
from web3.exceptions import Web3Exception

from gateway.background import Rounds
from gateway.chain import rawrpc
from gateway.chain.txsender import Signed, TxSender
from gateway.config import RelaySettings
from gateway.faults import crash_point
from gateway.relay import fees as fee_rules
from gateway.relay.fees import Fees
from gateway.relay.forward import execute_calldata
from gateway.relay.reverts import decode_revert
from gateway.relay.store import QUEUED, Events, RelayStore
from gateway.relay.webhooks import Webhooks
from gateway.telemetry import Metrics
from gateway.telemetry.metrics import failures_counter
from gateway.telemetry.sampling import parse_traceparent

# How long a used nonce may go without a receipt of any of the request's versions before
# another sender is believed to have taken it (and the request is sent again, fresh nonce).
_TAKEN_GRACE_S = 3.0

log = structlog.get_logger("gateway.relay")

NOOP_GAS = 21_000
BROADCASTS_IN_FLIGHT = 16
# Gas the forwarder spends around the call (signature check, nonce, event) and calldata.
FORWARDER_OVERHEAD_GAS = 60_000


class RelaySender:
    def __init__(  # noqa: PLR0913  # the collaborators of sending
        self,
        settings: RelaySettings,
        *,
        store: RelayStore,
        w3: AsyncWeb3[Any],
        account: LocalAccount,
        forwarder: AsyncContract,
        chain_id: int,
        metrics: Metrics,
        tracer: trace.Tracer,
        webhooks: Webhooks,
    ) -> None:
        self.settings = settings
        self.store = store
        self.w3 = w3
        self.account = account
        self.round_health = Rounds("relay", log, failures_counter(metrics, "relay"))
        self.relayer = account.address.lower()
        self.tx = TxSender(w3, account, chain_id)
        self.forwarder = forwarder
        self.chain_id = chain_id
        self.metrics = metrics
        self.tracer = tracer
        self.webhooks = webhooks
        self.wake = asyncio.Event()
        self.rounds = 0
        self._head_seen = -1  # the head at which unmined transactions were last checked
        self._chain_seen = -1  # the relayer's mined count at the last reconciliation
        # (request, nonce) -> when its nonce was first seen used with none of its versions
        # mined: a node may count a nonce before it serves the receipt (anvil under load),
        # or two nodes may disagree for a moment. Only a lasting gap means another sender.
        self._unexplained: dict[tuple[str, int], float] = {}
        # Status changes decided this round (from what the chain says: a crash before they
        # are written loses nothing, the next round decides them again), written together.
        self._decided: list[tuple[str, str, Events, dict[str, Any]]] = []

    async def run_forever(self) -> None:
        adopted = False
        while True:
            try:
                async with self.store.leadership() as leader:
                    if leader:
                        if not adopted:  # rows from before networks, once
                            await self.store.adopt()
                            adopted = True
                        await self.round()
                self.round_health.succeeded()
            except Exception as exc:  # noqa: BLE001  # the loop outlives a failed round
                self.round_health.failed(exc)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.settings.poll_interval_s):
                    await self.wake.wait()
            self.wake.clear()

    async def round(self) -> None:
        try:
            await self._round()
        finally:
            decided, self._decided = self._decided, []
            if decided:
                await self.store.set_statuses(decided)

    async def _round(self) -> None:
        self.rounds += 1
        head = await self.w3.eth.block_number
        chain_next = await self.w3.eth.get_transaction_count(self.account.address, "latest")
        if chain_next != self._chain_seen:  # the counter only needs the chain when it moved
            await self._reconcile(chain_next, head)
            self._chain_seen = chain_next
        fresh: Fees | None = None
        pending = await self.store.pending(limit=200)
        if pending:
            fresh = await fee_rules.suggest(self.w3, self.settings)
            await self._send_new(pending, fresh, head)
        active = await self.store.active()
        new_head, self._head_seen = head != self._head_seen, head
        if active:
            fresh = fresh or await fee_rules.suggest(self.w3, self.settings)
            versions = await self.store.versions_of([row.id for row in active])
            slots = asyncio.Semaphore(BROADCASTS_IN_FLIGHT)

            async def watch(row: Any) -> int:  # noqa: ANN401
                async with slots:
                    return await self._watch(
                        row, versions[row.id], fresh, head, chain_next, recheck=new_head
                    )

            at_ceiling = sum(await asyncio.gather(*(watch(row) for row in active)))
            self.metrics.relay_at_fee_ceiling.set(at_ceiling)
        else:
            self.metrics.relay_at_fee_ceiling.set(0)
        await self._refresh_gauges()

    # --- the nonce counter --------------------------------------------------------------

    async def _reconcile(self, chain_next: int, head: int) -> None:
        _counter, unheld = await self.store.reconcile_nonce(self.relayer, chain_next)
        for nonce in unheld:  # a gap would hold back every later transaction: fill it
            fresh = await fee_rules.suggest(self.w3, self.settings)
            signed = self._sign_noop(nonce, fresh)
            await self.store.replace(None, self.relayer, nonce, signed, kind="noop", head=head)
            await self._broadcast(signed)
            self.metrics.child(self.metrics.relay_tx_sent, "noop").inc()
            log.warning("relayer nonce gap filled with a no-op", nonce=nonce)

    # --- new requests -------------------------------------------------------------------

    async def _send_new(self, rows: list[Any], fresh: Fees, head: int) -> None:
        """Sign and store every sendable request (one database transaction: their nonces in
        order), then broadcast them together, then mark them submitted."""
        sendable = []
        for row in rows:
            if row.cancel_requested:
                self._settle(row, "canceled")
            elif row.deadline <= time.time():
                self._settle(row, "expired")
            else:
                sendable.append(row)
        if not sendable:
            return
        with self._span("relay.send", *sendable) as span:
            signed = await self.store.send_new(
                [
                    (row.id, self._execute_signer(row, fresh), self.webhooks.events(row, "sent"))
                    for row in sendable
                ],
                self.relayer,
                head=head,
            )
            span.set_attribute("relay.transactions", len(signed))
            crash_point("relay.before_broadcast", str(self.chain_id))
            slots = asyncio.Semaphore(BROADCASTS_IN_FLIGHT)

            async def broadcast(tx: Signed) -> None:
                async with slots:
                    await self._broadcast(tx, fresh=True)

            await asyncio.gather(*(broadcast(tx) for tx in signed))
            self.metrics.child(self.metrics.relay_tx_sent, "new").inc(len(signed))
            await self.store.mark_submitted(
                [
                    (row.id, self.webhooks.events(row, "submitted", txHash=tx.hash))
                    for row, tx in zip(sendable, signed, strict=True)
                ]
            )
            crash_point("relay.after_broadcast", str(self.chain_id))

    def _execute_signer(self, row: Any, fees: Fees) -> Callable[[int], Signed]:  # noqa: ANN401
        return lambda nonce: self._sign_execute(row, nonce, fees)

    # --- requests on their way ----------------------------------------------------------

    async def _watch(  # noqa: PLR0913  # one request's state
        self,
        row: Any,  # noqa: ANN401
        versions: list[Any],
        fresh: Fees,
        head: int,
        chain_next: int,
        *,
        recheck: bool,
    ) -> int:
        """One active request; returns 1 when it waits at the fee ceiling. On a new head,
        a transaction the node no longer has (nodes drop what the base fee priced out, or
        lose their pool on a restart) is broadcast again, its very bytes."""
        resent = False  # the node lacked it and has it now: it gets a round before a bump
        if row.status == "sent":  # stored, maybe never broadcast (a crash in between)
            resent = await self._broadcast(_signed_of(versions[-1]))
            await self.store.set_status(
                row.id, "submitted", self.webhooks.events(row, "submitted", txHash=row.tx_hash)
            )
        if row.relayer_nonce < chain_next:  # its nonce is used: one version is mined
            await self._mined(row, versions, head, chain_next)
            return 0
        latest = versions[-1]
        if recheck:
            resent = await self._broadcast(_signed_of(latest)) or resent
        wants_noop = row.cancel_requested or row.deadline <= time.time()
        if wants_noop and latest.kind != "noop":
            return await self._replace(row, latest, fresh, head, noop=True)
        if not resent and head - (row.sent_block or head) >= self.settings.bump_after_blocks:
            return await self._replace(row, latest, fresh, head, noop=latest.kind == "noop")
        return 0

    async def _replace(  # one replacement
        self,
        row: Any,  # noqa: ANN401
        latest: Any,  # noqa: ANN401
        fresh: Fees,
        head: int,
        *,
        noop: bool,
    ) -> int:
        previous = Fees(int(latest.max_fee), int(latest.priority_fee))
        fees = fee_rules.bump(previous, fresh, self.settings)
        if fees is None:
            log.error(
                "relay transaction at the fee ceiling; waiting",
                request=row.id,
                nonce=row.relayer_nonce,
                max_fee_gwei=self.settings.max_fee_gwei,
            )
            return 1
        if noop:
            signed = self._sign_noop(row.relayer_nonce, fees)
        else:
            signed = self._sign_execute(row, row.relayer_nonce, fees)
        kind = "noop" if noop else "bump"
        with self._span("relay.send", row) as span:
            span.set_attribute("relay.kind", kind)
            await self.store.replace(
                row.id, self.relayer, row.relayer_nonce, signed, kind=kind, head=head
            )
            await self._broadcast(signed)
        self.metrics.child(self.metrics.relay_tx_sent, kind).inc()
        log.info("relay transaction replaced", request=row.id, kind=kind, tx_hash=signed.hash)
        return 0

    async def _mined(self, row: Any, versions: list[Any], head: int, chain_next: int) -> None:  # noqa: ANN401
        with self._span("relay.confirm", row) as span:
            key = (row.id, row.relayer_nonce)
            for version in reversed(versions):
                receipt = await self.tx.receipt_now(version.hash)
                if receipt is None:
                    continue
                span.set_attribute("relay.tx_hash", version.hash)
                self._unexplained.pop(key, None)
                await self._settle_mined(row, version, receipt, head)
                return
            first = self._unexplained.setdefault(key, time.monotonic())
            if time.monotonic() - first < _TAKEN_GRACE_S:
                return  # ask again next round: its receipt may not be served yet
            # The nonce was used by a transaction that is none of ours: send it again.
            del self._unexplained[key]
            log.warning("relayer nonce taken outside the relay", request=row.id)
            await self.store.release(row.id, self.relayer, chain_next)

    async def _settle_mined(self, row: Any, version: Any, receipt: Any, head: int) -> None:  # noqa: ANN401
        block = int(receipt["blockNumber"], 16)
        fields = {
            "tx_hash": version.hash,
            "block_number": block,
            "gas_used": int(receipt["gasUsed"], 16),
        }
        if version.kind == "noop":
            status = "canceled" if row.cancel_requested else "expired"
        elif int(receipt["status"], 16) != 1:
            status = "failed"
            fields["revert_reason"] = await self._revert_reason(row, block)
        elif head - block + 1 < self.settings.confirmations:
            if row.status != "mined":
                events = self.webhooks.events(row, "mined", **_public(fields))
                self._decided.append((row.id, "mined", events, fields))
            return
        else:
            status = "confirmed"
            self.metrics.relay_confirm_seconds.observe(time.time() - row.created_at)
        self._settle(row, status, **fields)

    def _settle(self, row: Any, status: str, **fields: Any) -> None:  # noqa: ANN401
        events = self.webhooks.events(row, status, **_public(fields))
        self._decided.append((row.id, status, events, fields))
        self.metrics.child(self.metrics.relay_requests, status).inc()
        log.info("relay request settled", request=row.id, status=status, **_public(fields))

    async def _revert_reason(self, row: Any, block: int) -> str:  # noqa: ANN401
        """Why the mined ``execute`` reverted: the call replayed in its block's environment
        (its timestamp, the state that block left; a revert changes no state of its own)."""
        try:
            await rawrpc.call(
                self.w3,
                self.forwarder.address,
                execute_calldata(_execute_args(row)),
                sender=self.account.address,
                value=int(row.value),
                block=block,
            )
        except Web3Exception as exc:
            return decode_revert(exc)
        return "reverted"

    # --- signing and sending ------------------------------------------------------------

    def _sign_execute(self, row: Any, nonce: int, fees: Fees) -> Signed:  # noqa: ANN401
        data = execute_calldata(_execute_args(row))
        gas = int(row.gas) + int(row.gas) // 63 + FORWARDER_OVERHEAD_GAS + 16 * len(data)
        return self._sign(
            {"to": self.forwarder.address, "value": int(row.value), "gas": gas, "data": data},
            nonce,
            fees,
        )

    def _sign_noop(self, nonce: int, fees: Fees) -> Signed:
        return self._sign(
            {"to": self.account.address, "value": 0, "gas": NOOP_GAS, "data": "0x"}, nonce, fees
        )

    def _sign(self, tx: dict[str, Any], nonce: int, fees: Fees) -> Signed:
        return self.tx.sign_at(tx, nonce, max_fee=fees.max_fee, priority_fee=fees.priority_fee)

    async def _broadcast(self, signed: Signed, *, fresh: bool = False) -> bool:
        """The stored bytes to the node (see TxSender.broadcast); a refusal is for the
        watcher to settle (a receipt, a bump, or a release when the nonce was taken)."""
        return await self.tx.broadcast(signed.raw, signed.hash, new=fresh)

    async def _refresh_gauges(self) -> None:
        if self.rounds % 8 != 1:
            return
        counts = await self.store.counts()
        self.metrics.relay_pending.set(sum(counts.get(status, 0) for status in QUEUED))
        oldest = await self.store.oldest_unfinished()
        self.metrics.relay_oldest_unfinished.set(0 if oldest is None else time.time() - oldest)
        with contextlib.suppress(Web3Exception, OSError, TimeoutError):
            self.metrics.relayer_balance.set(await self.w3.eth.get_balance(self.account.address))

    def _span(self, name: str, *rows: Any) -> contextlib.AbstractContextManager[trace.Span]:  # noqa: ANN401
        """A span of the sender's work, linked to the traces of the requests that asked."""
        links = []
        for row in rows:
            parent = parse_traceparent(row.traceparent) if row.traceparent else None
            if parent is not None:
                context = trace.SpanContext(parent.trace_id, parent.span_id, is_remote=True)
                links.append(Link(context))
        attributes = {"relay.request_id": rows[0].id} if len(rows) == 1 else {}
        return self.tracer.start_as_current_span(name, links=links, attributes=attributes)


def _execute_args(row: Any) -> tuple[Any, ...]:  # noqa: ANN401
    return (
        AsyncWeb3.to_checksum_address(row.signer),
        AsyncWeb3.to_checksum_address(row.target),
        int(row.value),
        int(row.gas),
        int(row.deadline),
        bytes.fromhex(row.data[2:]),
        bytes.fromhex(row.signature[2:]),
    )


def _signed_of(version: Any) -> Signed:  # noqa: ANN401
    return Signed(
        version.raw,
        version.hash,
        int(version.relayer_nonce),
        int(version.max_fee),
        int(version.priority_fee),
    )


def _public(fields: dict[str, Any]) -> dict[str, Any]:
    names: dict[str, str] = {
        "tx_hash": "txHash",
        "block_number": "blockNumber",
        "gas_used": "gasUsed",
        "revert_reason": "revertReason",
    }
    return {names[key]: value for key, value in fields.items() if key in names}
