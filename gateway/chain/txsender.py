"""Write-ahead sending of the gateway's own transactions: sign, persist, broadcast, receipt.

The caller persists the signed bytes (``Signed.raw``) before broadcasting them, so that a
process killed at any point resumes with the very same transaction: ``broadcast`` is
idempotent (a node that knows the hash is not sent it again; "already known" / "nonce too
low" for the same bytes are not errors), and ``receipt`` waits for it without sending
anything. Anchoring and the relay both send through it: anchoring with the chain's pending
nonce (``sign``), the relay with nonces it allocates itself and EIP-1559 fees (``sign_at``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import structlog
from eth_account.signers.local import LocalAccount
from web3 import AsyncWeb3
from web3.exceptions import TimeExhausted, Web3Exception
from web3.types import Nonce, TxParams

from gateway.chain import rawrpc

log = structlog.get_logger("gateway.chain.tx")


@dataclass(frozen=True, slots=True)
class Signed:
    raw: str  # 0x… the signed transaction, as broadcast
    hash: str  # 0x… its hash
    nonce: int
    max_fee: int = 0  # EIP-1559 fees, when set by the caller (sign_at)
    priority_fee: int = 0


class TxSender:
    """Transactions of one key on one chain."""

    def __init__(self, w3: AsyncWeb3[Any], account: LocalAccount, chain_id: int | None) -> None:
        self.w3 = w3
        self.account = account
        self.chain_id = chain_id

    def base(self) -> TxParams:
        """What web3.py's ``build_transaction`` needs from us (the nonce is set at signing,
        so building asks the node for neither nonce nor chain id)."""
        params: TxParams = {"from": self.account.address, "nonce": Nonce(0)}
        if self.chain_id is not None:
            params["chainId"] = self.chain_id
        return params

    async def sign(self, tx: TxParams) -> Signed:
        """``tx`` (built without a nonce) signed with the key's next nonce (pending)."""
        nonce = await self.w3.eth.get_transaction_count(self.account.address, "pending")
        full: dict[str, Any] = {**tx, "from": self.account.address, "nonce": nonce}
        if self.chain_id is not None:
            full["chainId"] = self.chain_id
        signed = self.account.sign_transaction(full)
        return Signed(
            "0x" + bytes(signed.raw_transaction).hex(), "0x" + bytes(signed.hash).hex(), nonce
        )

    def sign_at(self, tx: dict[str, Any], nonce: int, *, max_fee: int, priority_fee: int) -> Signed:
        """``tx`` as an EIP-1559 transaction with the caller's nonce and fees (a caller that
        allocates its own nonces: the relay)."""
        full: dict[str, Any] = {
            **tx,
            "type": 2,
            "nonce": nonce,
            "maxFeePerGas": max_fee,
            "maxPriorityFeePerGas": priority_fee,
        }
        if self.chain_id is not None:
            full["chainId"] = self.chain_id
        signed = self.account.sign_transaction(full)
        return Signed(
            "0x" + bytes(signed.raw_transaction).hex(),
            "0x" + bytes(signed.hash).hex(),
            nonce,
            max_fee,
            priority_fee,
        )

    async def broadcast(self, raw: str, tx_hash: str, *, new: bool = False) -> bool:
        """Send the persisted bytes unless the node has them already (pending or mined); a
        ``new`` transaction, signed just now, is sent without asking. Returns whether they
        were sent. Raw JSON-RPC: web3.py's formatters cost several milliseconds of CPU per
        call."""
        if not new and await rawrpc.request(self.w3, "eth_getTransactionByHash", [tx_hash]):
            return False  # never send twice
        try:
            await rawrpc.request(self.w3, "eth_sendRawTransaction", [raw])
            log.info("transaction sent", tx_hash=tx_hash)
        except (Web3Exception, ValueError) as exc:
            # "already known" / "nonce too low": the same bytes reached the node before;
            # anything else is for the caller's next look (a receipt, a replacement).
            log.warning("broadcast refused", tx_hash=tx_hash, error=str(exc)[:200])
        return True

    async def receipt_now(self, tx_hash: str) -> dict[str, Any] | None:
        """The receipt as the node sends it (hex fields), or None when not mined."""
        receipt: dict[str, Any] | None = await rawrpc.request(
            self.w3, "eth_getTransactionReceipt", [tx_hash]
        )
        return receipt

    async def receipt(self, tx_hash: str, *, timeout_s: float) -> Any:  # noqa: ANN401  # TxReceipt
        """The receipt, or None if it is not there within ``timeout_s`` (ask again later)."""
        try:
            return await self.w3.eth.wait_for_transaction_receipt(
                tx_hash,  # type: ignore[arg-type]  # a 0x hash
                timeout=timeout_s,
                poll_latency=0.1,
            )
        except TimeExhausted:
            return None
