"""Gasless requests: GET /relay/forwarder, POST /relay, GET /relay, GET/DELETE /relay/{id}."""

from __future__ import annotations

import asyncio
import hmac
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import structlog
from aiohttp import web
from pydantic import BaseModel, ConfigDict
from web3 import AsyncWeb3

from gateway.background import cancel
from gateway.bodies import json_response, read_model
from gateway.caller import caller_of
from gateway.chain.artifacts import load_artifact
from gateway.chain.deploy import load_account, read_deployments
from gateway.chain.signatures import checksum_address
from gateway.chain.wallets import ContractWallets
from gateway.chain.web3 import CHAINS, ChainClient
from gateway.clock import rfc3339
from gateway.config import SETTINGS, Settings
from gateway.errors import InvalidParams
from gateway.openapi import Parameter, operation
from gateway.ratelimit import limiter_for
from gateway.relay.errors import (
    NotCancelable,
    NotTheSigner,
    RelayUnavailable,
    RequestNotFound,
    UnknownChain,
)
from gateway.relay.forward import Domain, selector_of
from gateway.relay.sender import RelaySender
from gateway.relay.service import RelayService, SubmitBody, Target
from gateway.relay.store import FINAL, RelayStore, WebhookOutbox
from gateway.relay.webhooks import Webhooks
from gateway.storage import STORAGE
from gateway.telemetry import TELEMETRY
from gateway.telemetry.state import CURRENT_REQUEST

log = structlog.get_logger("gateway.relay")

RELAY = web.AppKey("relay", RelayService)  # the default network's
RELAY_SENDER = web.AppKey("relay_sender", RelaySender)
RELAYS = web.AppKey("relays", dict[int, "Relay"])  # by chain id
routes = web.RouteTableDef()

_ID = re.compile(r"0x[0-9a-fA-F]{64}")
_ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")
_STATUSES = ("pending", "sent", "submitted", "mined", "confirmed", "failed", "expired", "canceled")
MAX_PAGE = 100


class RelayStatus(BaseModel):
    """A relayed request and where it is: pending -> sent -> submitted -> mined ->
    confirmed, or failed (reverted on chain), expired or canceled (its nonce freed)."""

    model_config = ConfigDict(extra="allow")
    id: str
    status: str


class RelayPage(BaseModel):
    items: list[RelayStatus]
    nextCursor: str | None  # noqa: N815


class ForwarderInfo(BaseModel):
    """Everything a frontend needs to build the typed data a wallet signs."""

    model_config = ConfigDict(extra="allow")
    address: str
    domain: dict[str, Any]


def _service(request: web.Request, chain_id: int | None = None) -> RelayService:
    """The relay of ``chain_id`` (None: the default network's)."""
    return _relay_of(request.app, chain_id).service


def _relay_of(app: web.Application, chain_id: int | None) -> Relay:
    relays = app.get(RELAYS) or {}
    if not relays:
        raise RelayUnavailable
    if chain_id is None:
        if RELAY not in app:
            raise UnknownChain("the default network has no relay; name a chainId")
        return Relay(app[RELAY], app[RELAY_SENDER])
    found = relays.get(chain_id)
    if found is None:
        known = ", ".join(str(chain) for chain in relays)
        raise UnknownChain(
            f"gasless requests are not relayed on chain {chain_id} here (relayed on: {known})",
            data={"chainIds": list(relays)},
        )
    return found


def _wake(app: web.Application, chain_id: int | None) -> None:
    """Start the sender of that network's relay now."""
    relay = (app.get(RELAYS) or {}).get(chain_id) if chain_id is not None else None
    if relay is not None:
        relay.sender.wake.set()
    elif RELAY_SENDER in app:
        app[RELAY_SENDER].wake.set()


def _chain_param(request: web.Request) -> int | None:
    value = request.query.get("chainId")
    if value is None:
        return None
    if not value.isdigit() or len(value) > 20:
        raise InvalidParams("chainId must be a chain id in decimal", code="relay.bad_chain_id")
    return int(value)


def _domain_chain(body: SubmitBody) -> int | None:
    """The network a request is for: the chainId of the domain it was signed over."""
    chain = None if body.domain is None else body.domain.get("chainId")
    if isinstance(chain, str) and chain.isdigit() and len(chain) <= 20:
        chain = int(chain)
    return chain if isinstance(chain, int) and not isinstance(chain, bool) else None


def represent(row: Any) -> dict[str, Any]:  # noqa: ANN401  # a relay_requests row
    return {
        "id": row.id,
        "status": row.status,
        "from": checksum_address(row.signer),
        "to": checksum_address(row.target),
        "value": row.value,
        "gas": row.gas,
        "nonce": row.nonce,
        "deadline": row.deadline,
        "data": row.data,
        "walletType": row.wallet_type,
        "chainId": row.chain_id,
        "txHash": row.tx_hash,
        "blockNumber": row.block_number,
        "gasUsed": row.gas_used,
        "attempts": row.attempts,
        "revertReason": row.revert_reason,
        "cancelRequested": row.cancel_requested,
        "createdAt": rfc3339(row.created_at, timespec="milliseconds"),
        "updatedAt": rfc3339(row.updated_at, timespec="milliseconds"),
    }


def _address_param(request: web.Request, name: str) -> str | None:
    value = request.query.get(name)
    if value is not None and not _ADDRESS.fullmatch(value):
        raise InvalidParams(f"{name} must be a 0x address", code="relay.bad_address")
    return value.lower() if value else None


@routes.get("/relay/forwarder")
@operation(
    summary="The forwarder, its EIP-712 domain, the allowed targets, and a signer's next nonce",
    tag="relay",
    parameters=(
        Parameter("from", "query", "the signer's address: adds its nextNonce"),
        Parameter("chainId", "query", "the network (default: the default network's)"),
    ),
    responses={
        200: ForwarderInfo,
        404: "No relay on that chain (`relay.unknown_chain`)",
        422: "Bad address or chain id",
        503: "Relay not enabled",
    },
)
async def forwarder(request: web.Request) -> web.Response:
    service = _service(request, _chain_param(request))
    return json_response(await service.forwarder_info(_address_param(request, "from")))


@routes.post("/relay")
@operation(
    summary="Relay a signed ERC-2771 request (gasless for the signer)",
    tag="relay",
    request=SubmitBody,
    responses={
        202: RelayStatus,
        200: "The same signed request again",
        401: "Bad signature, or a session is required",
        403: "Target or function not allowed, or not the signer's session",
        409: "Nonce is not the signer's next one",
        422: "Deadline, gas or value refused, or the simulation reverts (reason decoded)",
        429: "The signer's hourly quota is used up",
        503: "Relay not enabled",
    },
)
async def submit(request: web.Request) -> web.Response:
    if not request.app.get(RELAYS):  # before the body is read, as ever
        raise RelayUnavailable
    body = await read_model(request, SubmitBody)
    # The network of the domain it was signed over; a domain of no relayed chain goes to
    # the default network's relay, which refuses it as relay.wrong_domain.
    chain_id = _domain_chain(body)
    service = _service(request, chain_id if chain_id in request.app[RELAYS] else None)
    current = CURRENT_REQUEST.get()
    row, created = await service.submit(
        body, await caller_of(request), current.traceparent() if current else None
    )
    if created:
        _wake(request.app, row.chain_id)
    return json_response(represent(row), status=202 if created else 200)


@routes.get("/relay")
@operation(
    summary="Relayed requests, by signer and status",
    tag="relay",
    parameters=(
        Parameter("from", "query", "0x address of the signer"),
        Parameter("status", "query", "one of " + ", ".join(_STATUSES)),
        Parameter("cursor", "query", "nextCursor of the previous page"),
        Parameter("limit", "query", f"1..{MAX_PAGE} (default 50)", schema={"type": "integer"}),
    ),
    responses={200: RelayPage, 422: "Bad parameter", 503: "Relay not enabled"},
)
async def list_requests(request: web.Request) -> web.Response:
    service = _service(request)
    status = request.query.get("status")
    if status is not None and status not in _STATUSES:
        raise InvalidParams(
            f"status must be one of {', '.join(_STATUSES)}", code="relay.bad_status"
        )
    cursor = request.query.get("cursor", "0")
    limit = request.query.get("limit", "50")
    if not cursor.isdigit() or not limit.isdigit() or not 1 <= int(limit) <= MAX_PAGE:
        raise InvalidParams(f"cursor is a nextCursor; limit 1..{MAX_PAGE}", code="relay.bad_page")
    rows = await service.store.page(
        signer=_address_param(request, "from"), status=status, after=int(cursor), limit=int(limit)
    )
    next_cursor = str(rows[-1].seq) if len(rows) == int(limit) else None
    return json_response({"items": [represent(row) for row in rows], "nextCursor": next_cursor})


async def _request_row(request: web.Request) -> tuple[RelayService, Any]:
    service = _service(request)
    request_id = request.match_info["id"]
    if not _ID.fullmatch(request_id):
        raise InvalidParams("a relay request id is 0x and 64 hex digits", code="relay.bad_id")
    row = await service.store.get(request_id.lower())
    if row is None:
        raise RequestNotFound
    return service, row


@routes.get("/relay/{id}")
@operation(
    summary="One relayed request: status, transaction, block, attempts, revert reason",
    tag="relay",
    parameters=(Parameter("id", "path", "the request id (its EIP-712 digest)"),),
    responses={200: RelayStatus, 404: "No such request", 503: "Relay not enabled"},
)
async def get_request(request: web.Request) -> web.Response:
    service, row = await _request_row(request)
    body = represent(row)
    body["transactions"] = [  # every version signed for it, oldest first
        {
            "hash": version.hash,
            "kind": version.kind,
            "nonce": version.relayer_nonce,
            "maxFeePerGas": version.max_fee,
            "maxPriorityFeePerGas": version.priority_fee,
        }
        for version in await service.store.versions(row.id)
    ]
    return json_response(body)


@routes.delete("/relay/{id}")
@operation(
    summary="Cancel a request not mined yet (the signer's session, or the operator)",
    tag="relay",
    parameters=(
        Parameter("id", "path", "the request id"),
        Parameter("Authorization", "header", "`Bearer <token>` of the signer's session"),
        Parameter("X-Operator-Token", "header", "relay.operator_token"),
    ),
    responses={
        202: RelayStatus,
        401: "No session",
        403: "Not the signer",
        404: "No such request",
        409: "Already mined or final",
    },
)
async def cancel_request(request: web.Request) -> web.Response:
    service, row = await _request_row(request)
    if not _is_operator(request):
        caller = await caller_of(request)
        if caller.session is None:
            raise NotTheSigner("sign in as the request's signer to cancel it")
        if caller.session.address.lower() != row.signer:
            raise NotTheSigner
    if row.status in (*FINAL, "mined"):
        raise NotCancelable
    updated = await service.store.request_cancel(row.id)
    if updated.status in FINAL or not updated.cancel_requested:
        raise NotCancelable
    _wake(request.app, row.chain_id)
    return json_response(represent(updated), status=202)


def _is_operator(request: web.Request) -> bool:
    token = request.app[SETTINGS].relay.operator_token
    given = request.headers.get("X-Operator-Token")
    return (
        token is not None
        and given is not None
        and hmac.compare_digest(given.encode(), token.get_secret_value().encode())
    )


def _targets(settings: Settings, chain_id: int) -> dict[str, Target]:
    deployed = read_deployments(settings.anchor.deployments_file).get(str(chain_id), {})
    targets = {}
    for name, functions in settings.relay.targets.items():
        address = name if _ADDRESS.fullmatch(name) else deployed.get(name)
        if address is None:
            log.warning("relay target not deployed on this chain; skipped", target=name)
            continue
        targets[address.lower()] = Target(
            checksum_address(address), {selector_of(f): f.replace(" ", "") for f in functions}
        )
    return targets


@dataclass(frozen=True, slots=True)
class Relay:
    """The relay of one network: what accepts requests, and what sends them."""

    service: RelayService
    sender: RelaySender


async def relay_ctx(app: web.Application) -> AsyncIterator[None]:
    """A relay service and its sender for each network with a relayer key and a
    forwarder; one webhook deliverer for all of them (their outbox is one)."""
    settings = app[SETTINGS]
    relays = app[RELAYS] = {}
    async with aiohttp.ClientSession() as session:
        outbox = WebhookOutbox(app[STORAGE])  # every network's events
        webhooks = Webhooks(settings.relay, outbox, session, app[TELEMETRY].metrics)
        if settings.relay.enabled:
            for chain in app.get(CHAINS) or ():
                relay = await _relay(app, chain, webhooks)
                if relay is not None:
                    relays[chain.chain_id] = relay
                    if chain.default:
                        app[RELAY], app[RELAY_SENDER] = relay.service, relay.sender
        tasks = [
            asyncio.create_task(relay.sender.run_forever(), name=f"relay-sender-{chain_id}")
            for chain_id, relay in relays.items()
        ]
        if relays and settings.relay.webhooks:
            tasks.append(
                asyncio.create_task(
                    webhooks.run_forever(settings.relay.poll_interval_s), name="relay-webhooks"
                )
            )
        try:
            yield
        finally:
            await cancel(*tasks)


async def _relay(app: web.Application, chain: ChainClient, webhooks: Webhooks) -> Relay | None:
    """The relay of one network: [relay] with the network's own settings over it."""
    settings = app[SETTINGS]
    relay = settings.relay
    own = settings.network_for(chain.chain_id, default=chain.default).relay
    if not own.enabled:
        return None
    account = (
        load_account(own.private_key, None, None, "networks.relay")
        if own.private_key is not None
        else load_account(relay.private_key, relay.keystore_path, relay.keystore_password, "relay")
    )
    if account is None:
        log.info("relay off: no relayer key configured", chain_id=chain.chain_id)
        return None
    deployed = read_deployments(settings.anchor.deployments_file).get(str(chain.chain_id), {})
    address = (
        own.forwarder_address
        or (relay.forwarder_address if chain.default else None)
        or deployed.get("GatewayForwarder")
    )
    if address is None:
        log.warning(
            "relay off: no GatewayForwarder for this chain (gateway contracts deploy)",
            chain_id=chain.chain_id,
        )
        return None
    web3 = chain.web3
    contract = web3.eth.contract(
        address=AsyncWeb3.to_checksum_address(address), abi=load_artifact("GatewayForwarder")["abi"]
    )
    (
        _fields,
        name,
        version,
        domain_chain,
        verifying,
        _salt,
        _ext,
    ) = await contract.functions.eip712Domain().call()
    domain = Domain(name, version, domain_chain, checksum_address(verifying))
    telemetry = app[TELEMETRY]
    metrics = telemetry.metrics.of_network(chain.label)
    store = RelayStore(app[STORAGE], chain.chain_id, default=chain.default)
    service = RelayService(
        relay,
        store=store,
        forwarder=contract,
        domain=domain,
        relayer=account,
        targets=_targets(settings, chain.chain_id),
        wallets=ContractWallets(web3),
        limiter=limiter_for(app),
        metrics=metrics,
        tracer=telemetry.tracer,
    )
    sender = RelaySender(
        relay,
        store=store,
        w3=web3,
        account=account,
        forwarder=contract,
        chain_id=chain.chain_id,
        metrics=metrics,
        tracer=telemetry.tracer,
        webhooks=webhooks,
    )
    log.info(
        "relay on",
        chain_id=chain.chain_id,
        forwarder=domain.verifying_contract,
        relayer=account.address,
    )
    return Relay(service, sender)


__all__ = ["RELAY", "RELAY_SENDER", "relay_ctx", "routes"]
