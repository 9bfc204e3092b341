"""Accepting and reading signed records, independent of HTTP."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

import orjson
import structlog
from opentelemetry import trace

from gateway.caller import SessionLike
from gateway.chain import signatures
from gateway.chain.wallets import ContractWallets, ContractWalletsUnavailable, verify_signer
from gateway.config import Settings
from gateway.errors import GatewayError, NotFound, Unavailable
from gateway.records import acceptance
from gateway.records.acceptance import BadSignature, Candidate, NonceReused, SignerMismatch
from gateway.records.store import DuplicateNonce, NewRecord, RecordStore
from gateway.telemetry import Metrics, is_sampled

log = structlog.get_logger("gateway.records")


class RecordNotFound(NotFound):
    code = "records.not_found"
    default_message = "no such record (or not readable by this caller)"


class NotAnchored(NotFound):
    code = "records.not_anchored"
    default_message = "record is not anchored yet"


@dataclass(frozen=True, slots=True)
class Submitted:
    id: str
    signer: str
    received_at: float
    created: bool
    chain_id: int | None  # the network that anchors it


class RecordService:
    def __init__(  # noqa: PLR0913  # the collaborators of a record
        self,
        settings: Settings,
        *,
        store: RecordStore,
        wallets: Mapping[int, ContractWallets],
        default_chain_id: int | None,
        metrics: Metrics,
        tracer: trace.Tracer,
    ) -> None:
        self.settings = settings.records
        # The networks' chains: a domain's chainId must be one (unless domain rules say).
        self.chain_ids = frozenset(
            n.chain_id for n in settings.network_list() if n.chain_id is not None
        ) or frozenset(() if default_chain_id is None else {default_chain_id})
        self.default_chain_id = default_chain_id
        self.store = store
        self.wallets = wallets  # by chain id
        self.metrics = metrics
        self.tracer = tracer

    async def submit(
        self,
        typed_data: Any,  # noqa: ANN401  # JSON, checked by acceptance.prepare
        signature: str,
        *,
        claimed_signer: str | None,
        session: SessionLike | None,
    ) -> Submitted:
        """Verify, apply the policy, store. Counts every outcome."""
        started = time.perf_counter()
        outcome = "created"
        try:
            with self._span("records.verify"):
                candidate = acceptance.prepare(typed_data, max_bytes=self.settings.max_bytes)
                acceptance.check_policy(candidate, self.settings, chain_ids=self.chain_ids)
                chain_id = self._chain_of(candidate)
                signer, wallet_type = await self._signer(
                    candidate, signature, claimed_signer, chain_id
                )
            self.metrics.records_verify_duration.labels().observe(time.perf_counter() - started)
            if self.settings.require_session_signer and (
                session is None or session.address.lower() != signer
            ):
                raise SignerMismatch("the record's signer is not the signed-in address")
            nonce = self._nonce(candidate)
            private = self.settings.visibility == "private"
            record = NewRecord(
                id=candidate.id_hex,
                signer=signer,
                primary_type=candidate.primary_type,
                typed_data=candidate.canonical,
                signature=signature.lower(),
                wallet_type=wallet_type,
                private=private,
                readers=acceptance.readers_of(candidate, self.settings, signer)
                if private
                else set(),
                nonce=nonce,
                chain_id=chain_id,
            )
            with self._span("records.store"):
                try:
                    created, received_at = await self.store.insert(record)
                except DuplicateNonce as exc:
                    raise NonceReused(f"nonce {nonce} was already used by {signer}") from exc
            outcome = "created" if created else "duplicate"
            return Submitted(candidate.id_hex, signer, received_at, created, chain_id)
        except GatewayError as error:
            outcome = getattr(error, "outcome", None) or (
                "unavailable" if isinstance(error, Unavailable) else "rejected"
            )
            raise
        finally:
            self.metrics.records_submitted.labels(outcome).inc()

    def _span(self, name: str) -> AbstractContextManager[object]:
        """A child span when the trace is sampled; none otherwise (nothing would export)."""
        if is_sampled():
            return self.tracer.start_as_current_span(name)
        return contextlib.nullcontext()

    def _nonce(self, candidate: Candidate) -> str | None:
        if not self.settings.fresh_nonce:
            return None
        nonce = candidate.message.get("nonce")
        if nonce is None or isinstance(nonce, dict | list) or len(str(nonce)) > 78:
            raise acceptance.Rejected("the record's message needs a nonce field")
        return str(nonce)

    def _chain_of(self, candidate: Candidate) -> int | None:
        """The network of a record: its domain's chainId when that is one of the gateway's
        networks, else the default network."""
        chain = acceptance.domain_chain_id(candidate)
        return chain if chain in self.chain_ids else self.default_chain_id

    async def _signer(
        self, candidate: Candidate, signature: str, claimed: str | None, chain_id: int | None
    ) -> tuple[str, str]:
        """(lower-case signer, wallet type). Without a named signer the signer is the EOA
        recovered; a named one must have signed (``chain.wallets.verify_signer``: its key,
        or its contract wallet on the record's chain, EIP-6492 / EIP-1271)."""
        try:
            raw = signatures.signature_bytes(signature)
            if claimed is None:
                return signatures.recover_address(candidate.id, raw, checksum=False), "eoa"
            with self._span("records.verify_signer"):
                wallets = None if chain_id is None else self.wallets.get(chain_id)
                wallet_type = await verify_signer(wallets, claimed, candidate.id, raw)
        except (signatures.MalformedSignature, signatures.InvalidSignature) as exc:
            raise BadSignature(str(exc) or "signature is not by the named signer") from exc
        except ContractWalletsUnavailable as exc:
            raise BadSignature("signature is not by the named signer") from exc
        return claimed.lower(), wallet_type

    async def readable(self, record_id: str, session: SessionLike | None) -> Any:  # noqa: ANN401
        row = await self.store.get(record_id.lower())
        if row is None:
            raise RecordNotFound
        if row.private:
            caller = session.address.lower() if session else None
            if caller is None or (
                caller != row.signer and caller not in await self.store.readers(row.seq)
            ):
                raise RecordNotFound  # do not reveal that a private record exists
        return row


def represent(row: Any, *, check_anchor: bool = True) -> dict[str, Any]:  # noqa: ANN401
    anchor = None
    if check_anchor and row.status == "confirmed":
        anchor = {
            "root": row.root,
            "txHash": row.tx_hash,
            "blockNumber": row.block_number,
            "contract": row.contract,
            "chainId": row.chain_id,
        }
    return {
        "id": row.id,
        "signer": signatures.checksum_address(row.signer),
        "primaryType": row.primary_type,
        "typedData": orjson.Fragment(row.typed_data.encode()),
        "signature": row.signature,
        "walletType": row.wallet_type,
        "receivedAt": row.received_at,
        "anchor": anchor,
    }
