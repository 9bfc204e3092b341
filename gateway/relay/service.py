"""Accepting gasless requests: every check before any gas is spent, then the queue.

In order, each with its own error code and nothing sent: the target and function on the
allow-list, no ETH unless allowed, gas under the cap, the deadline far enough ahead, a
signed-in session of the signer when required, the signature (an EOA's, or a contract
wallet's by EIP-1271), the signer's quotas, the nonce (the forwarder's next one for the
signer, or the next after its queued requests), and a simulation that must not revert.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Annotated, Any

import structlog
from eth_account.signers.local import LocalAccount
from opentelemetry import trace
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field
from web3 import AsyncWeb3
from web3.contract import AsyncContract
from web3.exceptions import Web3Exception

from gateway.caller import Caller
from gateway.chain import rawrpc
from gateway.chain.signatures import InvalidSignature, MalformedSignature, checksum_address
from gateway.chain.wallets import ContractWallets, ContractWalletsUnavailable, verify_signer
from gateway.config import RelaySettings
from gateway.errors import GatewayError
from gateway.ratelimit import Limit, RateLimiter
from gateway.relay.errors import (
    BadNonce,
    BadSignature,
    DeadlineTooSoon,
    Expired,
    FunctionNotAllowed,
    GasTooHigh,
    NotTheSigner,
    QuotaExceeded,
    SessionRequired,
    SimulationReverted,
    TargetNotAllowed,
    ValueNotAllowed,
    WrongDomain,
)
from gateway.relay.forward import Domain, ForwardRequest, execute_calldata, selector_of
from gateway.relay.reverts import decode_revert
from gateway.relay.store import RelayStore
from gateway.telemetry import Metrics

log = structlog.get_logger("gateway.relay")

_ADDRESS = r"^0x[0-9a-fA-F]{40}$"
_NONCES = bytes.fromhex(selector_of("nonces(address)")[2:])


def _uint(value: object) -> object:
    """A JSON integer, or its decimal or 0x text (wallets send uint256 as strings)."""
    if isinstance(value, bool):
        raise ValueError("must be an unsigned integer")  # noqa: TRY004  # pydantic's contract
    if isinstance(value, str):
        text = value.strip()
        if text.startswith(("0x", "0X")) and len(text) > 2:
            return int(text, 16)
        if text.isdigit():
            return int(text)
        raise ValueError("must be an unsigned integer, or its decimal or 0x text")
    return value


Uint256 = Annotated[int, BeforeValidator(_uint), Field(ge=0, lt=2**256)]
Uint48 = Annotated[int, BeforeValidator(_uint), Field(ge=0, lt=2**48)]


class ForwardRequestBody(BaseModel):
    """An ERC-2771 ForwardRequest as signed (EIP-712, the forwarder's domain)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    from_: str = Field(alias="from", pattern=_ADDRESS)
    to: str = Field(pattern=_ADDRESS)
    value: Uint256 = 0
    gas: Uint256
    nonce: Uint256
    deadline: Uint48
    data: str = Field(pattern=r"^0x([0-9a-fA-F]{2})*$", max_length=64 * 1024)

    def forward_request(self) -> ForwardRequest:
        return ForwardRequest(
            sender=checksum_address(self.from_),
            to=checksum_address(self.to),
            value=self.value,
            gas=self.gas,
            nonce=self.nonce,
            deadline=self.deadline,
            data=bytes.fromhex(self.data[2:]),
        )


class SubmitBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    request: ForwardRequestBody
    signature: str = Field(pattern=r"^0x[0-9a-fA-F]*$", max_length=16_384)
    # The EIP-712 domain the wallet signed (optional): a domain that is not the forwarder's
    # is then refused as relay.wrong_domain, told apart from a wrong key.
    domain: dict[str, Any] | None = Field(default=None, max_length=8)


@dataclass(frozen=True, slots=True)
class Target:
    address: str  # checksummed
    functions: dict[str, str]  # selector -> signature


class RelayService:
    def __init__(  # noqa: PLR0913  # the collaborators of accepting a request
        self,
        settings: RelaySettings,
        *,
        store: RelayStore,
        forwarder: AsyncContract,
        domain: Domain,
        relayer: LocalAccount,
        targets: dict[str, Target],
        wallets: ContractWallets,
        limiter: RateLimiter,
        metrics: Metrics,
        tracer: trace.Tracer,
    ) -> None:
        self.settings = settings
        self.store = store
        self.forwarder = forwarder
        self.w3: AsyncWeb3[Any] = forwarder.w3
        self.domain = domain
        self.relayer = relayer
        self.targets = {address.lower(): target for address, target in targets.items()}
        self.wallets = wallets
        self.limiter = limiter
        self.metrics = metrics
        self.tracer = tracer
        # A signer's quotas are its own on each network (the default's keep their keys).
        self._quota_prefix = "relay:" if store.default else f"relay:{store.chain_id}:"

    async def forwarder_info(self, sender: str | None) -> dict[str, Any]:
        info: dict[str, Any] = {
            "address": self.domain.verifying_contract,
            "domain": self.domain.as_json(),
            "types": ForwardRequest(
                self.relayer.address, self.relayer.address, 0, 0, 0, 0, b""
            ).typed_data(self.domain)["types"],
            "primaryType": "ForwardRequest",
            "targets": [
                {"address": target.address, "functions": sorted(target.functions.values())}
                for target in self.targets.values()
            ],
            "maxGas": self.settings.max_gas,
            "minDeadlineSeconds": self.settings.min_deadline_s,
            "valueAllowed": self.settings.allow_value,
        }
        if sender is not None:
            info["from"] = checksum_address(sender)
            info["nextNonce"] = str(await self._next_nonce(sender.lower()))
        return info

    async def _next_nonce(self, signer: str) -> int:
        """The forwarder's nonce of ``signer``, or the one after its queued requests."""
        queued = await self.store.queued_nonces(signer, self.domain.verifying_contract.lower())
        return next_nonce(await self._chain_nonce(signer), queued)

    async def _chain_nonce(self, signer: str) -> int:
        data = _NONCES + bytes.fromhex(signer[2:].rjust(64, "0"))
        return int.from_bytes(await rawrpc.call(self.w3, self.forwarder.address, data), "big")

    async def submit(
        self, body: SubmitBody, caller: Caller, traceparent: str | None
    ) -> tuple[Any, bool]:
        """(the stored request, whether it is new). Raises the refusal otherwise."""
        try:
            return await self._submit(body, caller, traceparent)
        except GatewayError as error:
            self.metrics.child(self.metrics.relay_requests, error.code.split(".")[-1]).inc()
            raise

    async def _submit(
        self, body: SubmitBody, caller: Caller, traceparent: str | None
    ) -> tuple[Any, bool]:
        if body.domain is not None:
            self._check_domain(body.domain)
        request = body.request.forward_request()
        signature = bytes.fromhex(body.signature[2:])
        digest = request.digest(self.domain)
        request_id = "0x" + digest.hex()
        known = await self.store.get(request_id)
        if known is not None:  # the same signed request again: nothing new happens
            return known, False
        self._check_policy(request)
        self._check_session(request, caller)
        with self.tracer.start_as_current_span("relay.verify"):
            wallet_type = await self._verify(request, digest, signature)
        await self._take_quota(request)
        signer = request.sender.lower()
        forwarder = self.domain.verifying_contract.lower()
        chain_nonce = await self._chain_nonce(signer)
        with self.tracer.start_as_current_span("relay.simulate") as span:
            queued = await self.store.queued_nonces(signer, forwarder)
            expected = next_nonce(chain_nonce, queued)
            if request.nonce != expected:
                raise BadNonce(
                    f"nonce must be {expected} (the forwarder's next nonce for the signer "
                    "after its queued requests)",
                    data={"expected": str(expected)},
                )
            await self._simulate(request, signature, first=expected == chain_nonce)
            span.set_attribute("relay.simulated", value=True)
        row = {
            "id": request_id,
            "signer": signer,
            "forwarder": forwarder,
            "target": request.to.lower(),
            "value": str(request.value),
            "gas": request.gas,
            "nonce": str(request.nonce),
            "deadline": request.deadline,
            "data": "0x" + request.data.hex(),
            "signature": body.signature.lower(),
            "wallet_type": wallet_type,
            "traceparent": traceparent,
        }
        stored, created, wanted = await self.store.insert(
            row, expected_nonce=lambda queued_now: next_nonce(chain_nonce, queued_now)
        )
        if stored is None:  # another request of the signer took this nonce meanwhile
            raise BadNonce(f"nonce must be {wanted}", data={"expected": str(wanted)})
        if created:
            self.metrics.child(self.metrics.relay_requests, "accepted").inc()
        return stored, created

    def _check_domain(self, signed: dict[str, Any]) -> None:
        expected = self.domain.as_json()
        wrong = {}
        for key, value in expected.items():
            got = signed.get(key)
            if key == "chainId":
                same = str(got) == str(value) or (
                    isinstance(got, str) and got.startswith("0x") and int(got, 16) == value
                )
            elif key == "verifyingContract":
                same = isinstance(got, str) and got.lower() == str(value).lower()
            else:
                same = got == value
            if not same:
                wrong[key] = got
        if wrong or set(signed) - set(expected):
            names = ", ".join(sorted(wrong) or sorted(set(signed) - set(expected)))
            raise WrongDomain(
                f"the request was signed for another EIP-712 domain than the forwarder's "
                f"(differs in {names}): sign it for the domain GET /relay/forwarder gives",
                data={"expected": expected, "signed": signed},
            )

    def _check_policy(self, request: ForwardRequest) -> None:
        target = self.targets.get(request.to.lower())
        if target is None:
            raise TargetNotAllowed
        if request.selector not in target.functions:
            raise FunctionNotAllowed(
                f"{request.selector} is not one of {sorted(target.functions.values())}"
            )
        if request.value and not self.settings.allow_value:
            raise ValueNotAllowed
        if request.gas > self.settings.max_gas:
            raise GasTooHigh(
                f"gas {request.gas} is over the relay's cap of {self.settings.max_gas}"
            )
        now = time.time()
        if request.deadline <= now:
            raise Expired
        if request.deadline < now + self.settings.min_deadline_s:
            raise DeadlineTooSoon(
                f"the deadline must be at least {self.settings.min_deadline_s:.0f} s ahead"
            )

    def _check_session(self, request: ForwardRequest, caller: Caller) -> None:
        if not self.settings.require_session:
            return
        if caller.session is None:
            raise SessionRequired
        if caller.session.address.lower() != request.sender.lower():
            raise NotTheSigner

    async def _verify(self, request: ForwardRequest, digest: bytes, signature: bytes) -> str:
        try:
            return await verify_signer(self.wallets, request.sender, digest, signature)
        except (InvalidSignature, MalformedSignature, ContractWalletsUnavailable) as exc:
            raise BadSignature(
                "the signature is not the signer's for this request in the forwarder's domain "
                "(send the domain the wallet signed as `domain` to have a wrong domain told "
                "apart from a wrong key)",
                data={"domain": self.domain.as_json()},
            ) from exc

    async def _take_quota(self, request: ForwardRequest) -> None:
        hour = 3600.0
        signer = request.sender.lower()
        requests = Limit(self.settings.requests_per_hour / hour, self.settings.requests_per_hour)
        gas = Limit(self.settings.gas_per_hour / hour, self.settings.gas_per_hour)
        for key, limit, cost, what in (
            (f"{self._quota_prefix}requests:{signer}", requests, 1.0, "requests"),
            (f"{self._quota_prefix}gas:{signer}", gas, float(request.gas), "gas"),
        ):
            wait = await self.limiter.acquire(key, limit, cost)
            if wait > 0:
                raise QuotaExceeded(
                    f"the signer's hourly quota of {what} is used up", retry_after_s=wait
                )

    async def _simulate(self, request: ForwardRequest, signature: bytes, *, first: bool) -> None:
        """The target's call as the forwarder makes it (its own revert reason: the forwarder
        says only FailedCall), then, unless queued requests of the signer come first (their
        nonces are not used yet), the relayer's whole ``execute``."""
        try:
            await rawrpc.call(  # ERC-2771: the sender's address after the call data
                self.w3,
                request.to,
                request.data + bytes.fromhex(request.sender[2:]),
                sender=self.forwarder.address,
                value=request.value,
                gas=request.gas,
            )
            if first:
                await rawrpc.call(
                    self.w3,
                    self.forwarder.address,
                    execute_calldata(request.execute_args(signature)),
                    sender=self.relayer.address,
                    value=request.value,
                )
        except Web3Exception as exc:
            reason = decode_revert(exc)
            raise SimulationReverted(
                f"the request would revert: {reason}", data={"reason": reason}
            ) from exc


def next_nonce(chain_nonce: int, queued: list[int]) -> int:
    """A queued request whose nonce the chain already used is mined, just not seen yet."""
    waiting = [nonce for nonce in queued if nonce >= chain_nonce]
    return max(waiting) + 1 if waiting else chain_nonce
