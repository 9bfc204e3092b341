"""Signed-record endpoints: POST/GET /records, GET /records/{id}, GET /records/{id}/proof."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import orjson
import structlog
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from gateway.background import cancel
from gateway.bodies import json_response, parse_json, read_model, validate_model
from gateway.caller import Caller, SessionLike, caller_of
from gateway.chain.deploy import anchor_account, contract_address, load_account, read_deployments
from gateway.chain.signatures import checksum_address
from gateway.chain.wallets import contract_wallets
from gateway.chain.web3 import CHAINS, ChainClient
from gateway.clock import rfc3339
from gateway.config import SETTINGS
from gateway.errors import InvalidParams
from gateway.lane import LaneReply, LaneRequest, register
from gateway.openapi import Parameter, operation
from gateway.ratelimit import Limit, RateLimiter, limiter_for, take_or_refuse
from gateway.records.anchorer import Anchorer
from gateway.records.merkle import leaf_of
from gateway.records.service import NotAnchored, RecordNotFound, RecordService, represent
from gateway.records.store import RecordStore, decode_cursor, encode_cursor
from gateway.storage import STORAGE
from gateway.telemetry import TELEMETRY

log = structlog.get_logger("gateway.records")

RECORDS = web.AppKey("records", RecordService)
ANCHORER = web.AppKey("anchorer", Anchorer)  # the default network's
ANCHORERS = web.AppKey("anchorers", dict[int, Anchorer])  # by chain id
RECORDS_LIMITER = web.AppKey("records_limiter", RateLimiter)

routes = web.RouteTableDef()

_ID = re.compile(r"0x[0-9a-fA-F]{64}")
_ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SubmitRequest(_Model):
    """An EIP-712 record and its signature; ``signer`` names a contract wallet."""

    typedData: dict[str, Any]  # noqa: N815  # the API's JSON is camelCase
    signature: str = Field(pattern=r"^0x[0-9a-fA-F]*$", max_length=16_384)
    signer: str | None = Field(default=None, pattern=r"^0x[0-9a-fA-F]{40}$")


class Submitted(_Model):
    """The record's id (its EIP-712 digest), signer, and when it was first received."""

    id: str
    signer: str
    receivedAt: str  # noqa: N815


class AnchorInfo(_Model):
    root: str
    txHash: str  # noqa: N815
    blockNumber: int  # noqa: N815
    contract: str
    chainId: int  # noqa: N815


class Record(_Model):
    """A stored record."""

    id: str
    signer: str
    primaryType: str  # noqa: N815
    typedData: dict[str, Any]  # noqa: N815
    signature: str
    walletType: str  # noqa: N815
    receivedAt: str  # noqa: N815
    anchor: AnchorInfo | None


class RecordPage(_Model):
    """Records in the order they were received; pass ``nextCursor`` back for more."""

    items: list[Record]
    nextCursor: str | None  # noqa: N815


class Proof(_Model):
    """Everything needed to check the record against the anchored root."""

    root: str
    leaf: str
    proof: list[str]
    contract: str
    chainId: int  # noqa: N815
    txHash: str  # noqa: N815
    blockNumber: int  # noqa: N815


async def _session(request: web.Request) -> SessionLike | None:
    return (await caller_of(request)).session


async def _limit_submissions(app: web.Application, caller: Caller) -> None:
    settings = app[SETTINGS]
    await take_or_refuse(
        app[RECORDS_LIMITER],
        f"records:{caller.key}",
        Limit(settings.records.submit_rate_per_s, settings.records.submit_burst),
        metrics=app[TELEMETRY].metrics,
        tier="records",
        message="too many records from this caller",
    )


def _record_json(row: Any) -> dict[str, Any]:  # noqa: ANN401
    body = represent(row)
    body["receivedAt"] = rfc3339(row.received_at, timespec="milliseconds")
    return body


def _record_id(request: web.Request) -> str:
    record_id = request.match_info["id"]
    if not _ID.fullmatch(record_id):
        raise InvalidParams("a record id is 0x and 64 hex digits", code="records.bad_id")
    return record_id.lower()


@routes.post("/records")
@operation(
    summary="Submit a signed EIP-712 record",
    tag="records",
    request=SubmitRequest,
    responses={
        201: Submitted,
        200: "The same record again (same id)",
        429: "Too many records from this caller (Retry-After)",
        400: "Malformed JSON",
        401: "Signature does not verify",
        403: "Signer is not the signed-in address (when required)",
        409: "Nonce already used by this signer",
        413: "Record too large",
        422: "Record not accepted by the policy",
    },
)
async def submit(request: web.Request) -> web.Response:
    caller = await caller_of(request)
    await _limit_submissions(request.app, caller)  # before any verification work
    body = await read_model(request, SubmitRequest)
    status, payload = await _submitted(request.app, body, caller.session)
    return json_response(payload, status=status)


def submit_answerer(app: web.Application) -> Callable[[LaneRequest], Awaitable[LaneReply] | None]:
    """POST /records in the lane (``gateway.lane``): an anonymous caller's record with a
    plain JSON body, with the same checks, limits, replies and errors as ``submit``; None
    (aiohttp serves it) for any other Content-Type, and for a request with a session
    (``Authorization``), whose caller ``submit`` resolves."""

    async def answer(request: LaneRequest) -> LaneReply:
        caller = Caller(request.client_ip)
        await _limit_submissions(app, caller)
        body = validate_model(SubmitRequest, parse_json(request.body))
        status, payload = await _submitted(app, body, None)
        return LaneReply(status, orjson.dumps(payload))

    def start(request: LaneRequest) -> Awaitable[LaneReply] | None:
        content_type = request.content_type
        if request.authorization is not None:
            return None
        if content_type is None or not _JSON_TYPE.fullmatch(content_type):
            return None  # aiohttp's own parse of the header decides (415 or not)
        return answer(request)

    return start


# "application/json", any case, with parameters after it: what aiohttp reads as JSON too.
_JSON_TYPE = re.compile(rb"application/json[ \t]*(?:;[\t\x20-\x7e]*)?", re.IGNORECASE)


async def _submitted(
    app: web.Application, body: SubmitRequest, session: SessionLike | None
) -> tuple[int, dict[str, str]]:
    """A validated submission verified and stored: (status, the reply's JSON)."""
    result = await app[RECORDS].submit(
        body.typedData, body.signature, claimed_signer=body.signer, session=session
    )
    anchorer = None if result.chain_id is None else app[ANCHORERS].get(result.chain_id)
    if result.created and anchorer is not None:
        anchorer.note_new_record()
    payload = {
        "id": result.id,
        "signer": checksum_address(result.signer),
        "receivedAt": rfc3339(result.received_at, timespec="milliseconds"),
    }
    return (201 if result.created else 200), payload


@routes.get("/records")
@operation(
    summary="List records by signer and/or primary type",
    tag="records",
    parameters=(
        Parameter("signer", "query", "0x address"),
        Parameter("primaryType", "query", "EIP-712 primary type"),
        Parameter(
            "limit", "query", "page size (1..max_page, default 50)", schema={"type": "integer"}
        ),
        Parameter("cursor", "query", "nextCursor of the previous page"),
    ),
    responses={200: RecordPage, 422: "Bad parameter"},
)
async def list_records(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS].records
    query = request.query
    signer = query.get("signer")
    if signer is not None and not _ADDRESS.fullmatch(signer):
        raise InvalidParams("signer must be a 0x address", code="records.bad_signer")
    try:
        limit = int(query.get("limit", "50"))
    except ValueError:
        limit = 0
    if not 1 <= limit <= settings.max_page:
        raise InvalidParams(f"limit must be 1..{settings.max_page}", code="records.bad_limit")
    after = decode_cursor(query["cursor"]) if "cursor" in query else 0
    session = await _session(request)
    rows = await request.app[RECORDS].store.page(
        signer=signer.lower() if signer else None,
        primary_type=query.get("primaryType"),
        after=after,
        limit=limit,
        reader=session.address.lower() if session else None,
    )
    next_cursor = encode_cursor(rows[-1].seq) if len(rows) == limit else None
    return json_response({"items": [_record_json(row) for row in rows], "nextCursor": next_cursor})


@routes.get("/records/{id}")
@operation(
    summary="One record, its signer and anchor",
    tag="records",
    parameters=(Parameter("id", "path", "the record id (EIP-712 digest)"),),
    responses={200: Record, 404: "No such record"},
)
async def get_record(request: web.Request) -> web.Response:
    row = await request.app[RECORDS].readable(_record_id(request), await _session(request))
    return json_response(_record_json(row))


@routes.get("/records/{id}/proof")
@operation(
    summary="Merkle proof of an anchored record",
    tag="records",
    parameters=(Parameter("id", "path", "the record id"),),
    responses={200: Proof, 404: "No such record, or not anchored yet"},
)
async def get_proof(request: web.Request) -> web.Response:
    row = await request.app[RECORDS].readable(_record_id(request), await _session(request))
    if row.status != "confirmed" or row.proof is None:
        raise NotAnchored
    return json_response(
        {
            "root": row.root,
            "leaf": "0x" + leaf_of(bytes.fromhex(row.id[2:])).hex(),
            "proof": orjson.loads(row.proof),
            "contract": row.contract,
            "chainId": row.chain_id,
            "txHash": row.tx_hash,
            "blockNumber": row.block_number,
        }
    )


async def records_ctx(app: web.Application) -> AsyncIterator[None]:
    """The record service, and an anchorer for each network with a key and a contract."""
    settings = app[SETTINGS]
    telemetry = app[TELEMETRY]
    chains = app.get(CHAINS)
    default = None if chains is None else chains.default
    service = RecordService(
        settings,
        store=RecordStore(app[STORAGE]),
        wallets=contract_wallets(app),
        default_chain_id=None if default is None else default.chain_id,
        metrics=telemetry.metrics,
        tracer=telemetry.tracer,
    )
    app[RECORDS] = service
    app[RECORDS_LIMITER] = limiter_for(app)
    register(app, "POST", "/records", submit_answerer(app))
    anchorers = app[ANCHORERS] = {}
    for chain in chains or ():
        anchorer = _anchorer(app, chain)
        if anchorer is not None:
            anchorers[chain.chain_id] = anchorer
            if chain.default:
                app[ANCHORER] = anchorer
    tasks = [
        asyncio.create_task(anchorer.run_forever(), name=f"anchorer-{chain_id}")
        for chain_id, anchorer in anchorers.items()
    ]
    try:
        yield
    finally:
        await cancel(*tasks)


def _anchorer(app: web.Application, chain: ChainClient) -> Anchorer | None:
    """The anchorer of one network: [anchor] with the network's own settings over it."""
    settings = app[SETTINGS]
    own = settings.network_for(chain.chain_id, default=chain.default).anchor
    if not (settings.anchor.enabled and own.enabled):
        return None
    account = (
        load_account(own.private_key, None, None, "networks.anchor")
        if own.private_key is not None
        else anchor_account(settings.anchor)
    )
    if account is None:
        log.info("anchoring off: no anchor key configured", chain_id=chain.chain_id)
        return None
    address = own.contract_address or (
        contract_address(settings.anchor, chain.chain_id)
        if chain.default
        else read_deployments(settings.anchor.deployments_file)
        .get(str(chain.chain_id), {})
        .get("MerkleAnchor")
    )
    if address is None:
        log.warning(
            "anchoring off: no MerkleAnchor address for this chain "
            "(run `gateway contracts deploy`)",
            chain_id=chain.chain_id,
        )
        return None
    telemetry = app[TELEMETRY]
    return Anchorer(
        settings.anchor,
        database=app[STORAGE],
        w3=chain.web3,
        account=account,
        contract=address,
        chain_id=chain.chain_id,
        metrics=telemetry.metrics.of_network(chain.label),
        tracer=telemetry.tracer,
        default=chain.default,
    )


__all__ = ["ANCHORER", "ANCHORERS", "RECORDS", "RecordNotFound", "records_ctx", "routes"]
