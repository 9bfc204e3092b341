"""Why a relay request is refused: each refusal has its own code, and nothing is sent."""

from __future__ import annotations

from gateway.errors import (
    Conflict,
    Forbidden,
    GatewayError,
    InvalidParams,
    NotFound,
    RateLimited,
    Unauthenticated,
    Unavailable,
)


class RelayUnavailable(Unavailable):
    code = "relay.unavailable"
    default_message = "gasless requests are not enabled on this gateway"


class UnknownChain(NotFound):
    code = "relay.unknown_chain"
    default_message = "gasless requests are not relayed on this chain here"


class BadSignature(Unauthenticated):
    code = "relay.bad_signature"
    default_message = "the signature is not the signer's for this request"


class WrongDomain(InvalidParams):
    code = "relay.wrong_domain"
    default_message = "the request was signed for another EIP-712 domain than the forwarder's"


class DeadlineTooSoon(InvalidParams):
    code = "relay.deadline_too_soon"


class Expired(InvalidParams):
    code = "relay.expired"
    default_message = "the request's deadline has passed"


class BadNonce(Conflict):
    code = "relay.bad_nonce"


class TargetNotAllowed(Forbidden):
    code = "relay.target_not_allowed"
    default_message = "this contract is not on the relay's allow-list"


class FunctionNotAllowed(Forbidden):
    code = "relay.function_not_allowed"
    default_message = "this function of the contract is not on the relay's allow-list"


class ValueNotAllowed(InvalidParams):
    code = "relay.value_not_allowed"
    default_message = "requests that send ETH (value > 0) are not relayed"


class GasTooHigh(InvalidParams):
    code = "relay.gas_too_high"


class QuotaExceeded(RateLimited):
    code = "relay.quota_exceeded"


class SessionRequired(Unauthenticated):
    code = "relay.session_required"
    default_message = "sign in as the request's signer to submit it"


class NotTheSigner(Forbidden):
    code = "relay.not_signer"
    default_message = "the signed-in address is not the request's signer"


class SimulationReverted(InvalidParams):
    code = "relay.simulation_reverted"


class RequestNotFound(NotFound):
    code = "relay.not_found"
    default_message = "no such relay request"


class NotCancelable(Conflict):
    code = "relay.not_cancelable"
    default_message = "the request is final or already mined"


__all__ = [
    "BadNonce",
    "BadSignature",
    "DeadlineTooSoon",
    "Expired",
    "FunctionNotAllowed",
    "GasTooHigh",
    "GatewayError",
    "NotCancelable",
    "NotTheSigner",
    "QuotaExceeded",
    "RelayUnavailable",
    "RequestNotFound",
    "SessionRequired",
    "SimulationReverted",
    "TargetNotAllowed",
    "ValueNotAllowed",
]
