"""POST /rpc (JSON-RPC 2.0, single and batch) and GET /rpc (JSON-RPC over WebSocket), and
the same at /rpc/{network} for each network the gateway serves."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable

import structlog
from aiohttp import web
from pydantic import BaseModel, ConfigDict

from gateway.background import running
from gateway.bodies import json_response, read_body
from gateway.caller import (
    SESSIONS,
    Caller,
    SessionResolver,
    anonymous,
    bearer_token,
    caller_of,
    resolve_caller,
)
from gateway.errors import Unavailable, retry_after
from gateway.lane import Answer, LaneReply, LaneRequest, register
from gateway.openapi import Parameter, operation
from gateway.ratelimit import limiter_for
from gateway.rpc import jsonrpc
from gateway.rpc.cache import RedisCache
from gateway.rpc.context import UPSTREAM_SESSION
from gateway.rpc.explain import Explain, HeaderFacts, headers_of, hit_head
from gateway.rpc.jsonrpc import RpcInvalidRequest, RpcParseError
from gateway.rpc.networks import NETWORKS
from gateway.rpc.pool import UpstreamPool
from gateway.rpc.service import RpcService
from gateway.rpc.subscriptions import SubscriptionHub, SubscriptionRefused
from gateway.rpc.websocket import ConnectionCounter, WebSocketGateway
from gateway.storage.redis import REDIS
from gateway.telemetry import FACTS, TELEMETRY

log = structlog.get_logger("gateway.rpc")

RPC = web.AppKey("rpc", RpcService)
HUB = web.AppKey("subscription_hub", SubscriptionHub)
WEBSOCKETS = web.AppKey("websockets", WebSocketGateway)

routes = web.RouteTableDef()

_JSON = "application/json"
_JSON_HEADERS = {"Content-Type": _JSON}


class JsonRpcRequest(BaseModel):
    """A JSON-RPC 2.0 request object, or an array of them (a batch)."""

    model_config = ConfigDict(extra="allow")
    jsonrpc: str = "2.0"
    method: str
    params: list[object] | dict[str, object] = []
    id: str | int | None = None


class JsonRpcResponse(BaseModel):
    """A JSON-RPC 2.0 response object (``result`` or ``error``), or an array of them."""

    model_config = ConfigDict(extra="allow")
    jsonrpc: str = "2.0"
    id: str | int | None = None


async def rpc_caller(request: web.Request) -> Caller:
    """The request's caller; when the session store is down, served as anonymous (its
    limits and policy), since a revoked token cannot be told from a valid one now."""
    try:
        return await caller_of(request)
    except Unavailable:
        return _anonymous_for_now(anonymous(request))


async def _lane_caller(resolver: SessionResolver | None, request: LaneRequest) -> Caller:
    """``rpc_caller`` for a request of the lane that carries ``Authorization``."""
    assert request.authorization is not None  # noqa: S101  # only such requests come here
    token = bearer_token(request.authorization.decode("latin-1"))
    try:
        return await resolve_caller(resolver, request.client_ip, token)
    except Unavailable:
        return _anonymous_for_now(Caller(request.client_ip))


def _anonymous_for_now(caller: Caller) -> Caller:
    log.warning("session check unavailable; serving as anonymous", client_ip=caller.ip)
    return caller


def _json(body: bytes, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    if headers is None:  # the common reply: no content-type parsing, one header dict copy
        return web.Response(body=body, status=status, headers=_JSON_HEADERS)
    return web.Response(body=body, status=status, content_type=_JSON, headers=headers)


_RPC_RESPONSES: dict[int, type[BaseModel] | str] = {
    200: JsonRpcResponse,
    204: "A batch of notifications only",
    401: "Invalid session token",
    413: "Body over the size limit",
    429: "Rate limited (a single call); batches answer -32005 per call",
}
_UNKNOWN_NETWORK = "No such network (`rpc.unknown_network`, the known ones in `error.data`)"


@routes.post("/rpc")
@operation(
    summary="JSON-RPC 2.0 to Ethereum (single or batch)",
    tag="json-rpc",
    request=JsonRpcRequest,
    parameters=(Parameter("Authorization", "header", "optional `Bearer <token>`: signed-in tier"),),
    responses=_RPC_RESPONSES,
    description="Errors follow JSON-RPC 2.0: -32700 parse error, -32600 invalid request "
    "(and batch over the limit), -32601 method not allowed, -32005 limit exceeded, "
    "-32002 upstream failure.",
)
async def rpc_http(request: web.Request) -> web.StreamResponse:
    return await _rpc_http(request, request.app[RPC])


@routes.post("/rpc/{network}")
@operation(
    summary="JSON-RPC 2.0 to one of the gateway's networks (single or batch)",
    tag="json-rpc",
    request=JsonRpcRequest,
    parameters=(
        Parameter(
            "network", "path", "a chain id (`1`, `8453`) or an alias (`mainnet`)", required=True
        ),
        Parameter("Authorization", "header", "optional `Bearer <token>`: signed-in tier"),
    ),
    responses={**_RPC_RESPONSES, 404: _UNKNOWN_NETWORK},
    description="As POST /rpc, on the network named in the path; POST /rpc is the default network.",
)
async def rpc_http_network(request: web.Request) -> web.StreamResponse:
    service, _websockets = _network_of(request)
    return await _rpc_http(request, service)


def _network_of(request: web.Request) -> tuple[RpcService, WebSocketGateway]:
    """The services of the network in the path (404 ``rpc.unknown_network``)."""
    network = request.app[NETWORKS].named(request.match_info["network"])
    if network.service is None or network.websockets is None:  # before rpc_ctx: none yet
        raise Unavailable("the JSON-RPC gateway is starting")
    return network.service, network.websockets


async def _rpc_http(request: web.Request, service: RpcService) -> web.StreamResponse:
    caller = await rpc_caller(request)
    body = await read_body(request)
    answer = await rpc_answer(service, body, caller)
    if answer.status == 204:
        return web.Response(status=204)
    response = _json(answer.body, status=answer.status, headers=dict(answer.headers))
    if answer.facts is not None:
        response[FACTS] = answer.facts
    return response


async def rpc_answer(
    service: RpcService, body: bytes, caller: Caller, started: float | None = None
) -> LaneReply:
    """The answer to a POST /rpc body, whichever transport received it."""
    started = time.perf_counter() if started is None else started
    try:
        parsed = jsonrpc.parse_body(body, max_batch=service.settings.max_batch)
    except (RpcParseError, RpcInvalidRequest) as error:
        return LaneReply(200, jsonrpc.error_bytes(None, error.rpc_code, error.message))
    return await _answer_parsed(service, parsed, caller, started)


async def _answer_parsed(
    service: RpcService, parsed: jsonrpc.Parsed, caller: Caller, started: float
) -> LaneReply:
    explained = service.settings.explain_headers
    if not parsed.batch and isinstance(parsed.items[0], jsonrpc.Call):
        call = parsed.items[0]
        wait = await service.admit_one(call, caller)
        if wait > 0:
            return LaneReply(429, _limited_reply(call, wait), (("Retry-After", retry_after(wait)),))
        explain = Explain()
        reply = await service.execute(call, caller, explain=explain)
        if call.notification:
            return LaneReply(204, b"")
        return _explained(reply, [explain], started, batch=False, explained=explained)
    explains: list[Explain] = []
    replies = await service.run(parsed, caller, explains=explains)
    if not replies:
        return LaneReply(204, b"")
    body = jsonrpc.batch_bytes(replies) if parsed.batch else replies[0]
    return _explained(body, explains, started, batch=parsed.batch, explained=explained)


def _explained(
    body: bytes, explains: list[Explain], started: float, *, batch: bool, explained: bool
) -> LaneReply:
    """A 200 with the headers that say how its calls were answered (``rpc.explain_headers``)."""
    if not explained or not explains:
        return LaneReply(200, body)
    headers = headers_of(explains, started, batch=batch)
    return LaneReply(200, body, headers, facts=HeaderFacts(headers) if batch else explains[0])


def rpc_answerer(service: RpcService, app: web.Application) -> Callable[[LaneRequest], Answer]:
    """POST /rpc in the lane (``gateway.lane``): for an anonymous caller, a single call the
    process's cache answers at once; any other call or batch, and any call with a session
    (``Authorization: Bearer``, resolved first, as ``rpc_http`` does), by the same code as
    ``rpc_http``. A request of notifications only is aiohttp's (its 204 has no body)."""
    max_batch = service.settings.max_batch
    answers_now = service.answers_now
    explained = service.settings.explain_headers

    def answer(request: LaneRequest) -> Answer:
        started = time.perf_counter()
        if request.authorization is not None:
            return _with_session(service, app, request, started)
        try:
            parsed = jsonrpc.parse_body(request.body, max_batch=max_batch)
        except (RpcParseError, RpcInvalidRequest) as error:
            return LaneReply(200, jsonrpc.error_bytes(None, error.rpc_code, error.message))
        call = parsed.items[0]
        if _notifications_only(parsed):
            return None
        caller = Caller(request.client_ip)
        if answers_now and not parsed.batch and isinstance(call, jsonrpc.Call):
            explain = Explain()
            reply = service.cached_reply(call, caller, explain)
            if reply is not None:
                return _hit(service, call, caller, reply, explain, started if explained else None)
        return _answer_parsed(service, parsed, caller, started)

    return answer


def _hit(  # noqa: PLR0913, PLR0917  # what the lane knows of the call by then
    service: RpcService,
    call: jsonrpc.Call,
    caller: Caller,
    reply: bytes,
    explain: Explain,
    started: float | None,
) -> LaneReply:
    """A cached reply, once the caller's rate limit admits it; with the headers that say so
    when ``started`` (None: ``rpc.explain_headers`` is off), rendered at once."""
    wait = service.admit_now(call, caller)
    if wait > 0:
        return LaneReply(429, _limited_reply(call, wait), (("Retry-After", retry_after(wait)),))
    service.count_cached_reply(call, caller)
    if started is None:
        return LaneReply(200, reply)
    return LaneReply(200, reply, (), _JSON, hit_head(explain.block, started), explain)


def _with_session(
    service: RpcService, app: web.Application, request: LaneRequest, started: float
) -> Answer:
    """A lane request with ``Authorization``: its caller resolved first (401 before the
    body is read, as ``rpc_http``), then answered by ``rpc_answer``."""
    try:
        parsed = jsonrpc.parse_body(request.body, max_batch=service.settings.max_batch)
    except (RpcParseError, RpcInvalidRequest):
        parsed = None  # the caller first, then the same error as rpc_answer gives
    if parsed is not None and _notifications_only(parsed):
        return None

    async def signed_in() -> LaneReply:
        caller = await _lane_caller(app.get(SESSIONS), request)
        return await rpc_answer(service, request.body, caller, started)

    return signed_in()


def _notifications_only(parsed: jsonrpc.Parsed) -> bool:
    if not parsed.batch:  # the common case, without a generator
        call = parsed.items[0]
        return isinstance(call, jsonrpc.Call) and call.notification
    return all(isinstance(item, jsonrpc.Call) and item.notification for item in parsed.items)


def _limited_reply(call: jsonrpc.Call, wait: float) -> bytes:
    data = {"retryAfterSeconds": round(wait, 3)}
    return jsonrpc.error_bytes(call.id, jsonrpc.LIMIT_EXCEEDED, "rate limit exceeded", data)


@routes.get("/rpc")
@operation(
    summary="JSON-RPC over WebSocket, with eth_subscribe (newHeads, logs, …)",
    tag="json-rpc",
    responses={101: "Switching Protocols", 429: "Too many connections for this caller"},
    description="Same calls, policy and limits as POST /rpc. One upstream subscription per "
    "distinct subscription is shared by all clients; a client that stops reading is "
    "disconnected with close code 1008.",
)
async def rpc_ws(request: web.Request) -> web.StreamResponse:
    caller = await rpc_caller(request)
    return await request.app[WEBSOCKETS].serve(request, caller)


@routes.get("/rpc/{network}")
@operation(
    summary="JSON-RPC over WebSocket to one of the gateway's networks",
    tag="json-rpc",
    parameters=(Parameter("network", "path", "a chain id or an alias", required=True),),
    responses={
        101: "Switching Protocols",
        404: _UNKNOWN_NETWORK,
        429: "Too many connections for this caller",
    },
    description="As GET /rpc, on the network named in the path: its nodes, its heads.",
)
async def rpc_ws_network(request: web.Request) -> web.StreamResponse:
    _service, websockets = _network_of(request)
    caller = await rpc_caller(request)
    return await websockets.serve(request, caller)


class NetworkInfo(BaseModel):
    """One network the gateway serves."""

    chainId: int | None  # noqa: N815  # JSON's field names
    alias: str | None
    default: bool
    rpc: str  # its JSON-RPC path (POST, and GET for the WebSocket)
    blockNumber: int | None  # noqa: N815  # the tip it serves (None: no node answered yet)


class NetworkList(BaseModel):
    networks: list[NetworkInfo]


@routes.get("/networks")
@operation(
    summary="The networks (chains) this gateway serves, with the block each is at",
    tag="json-rpc",
    responses={200: NetworkList},
    description="A frontend on several chains makes a transport per entry (`rpc`); the "
    "default one is also at /rpc.",
)
async def networks(request: web.Request) -> web.Response:
    listed = []
    for network in request.app[NETWORKS]:
        head = network.pool.head_number()
        listed.append(
            {
                "chainId": network.chain_id,
                "alias": network.settings.alias,
                "default": network is request.app[NETWORKS].default,
                "rpc": f"/rpc/{network.chain_id}" if network.chain_id is not None else "/rpc",
                "blockNumber": head if head >= 0 else None,
            }
        )
    return json_response({"networks": listed})


async def rpc_ctx(app: web.Application) -> AsyncIterator[None]:
    """Each network's JSON-RPC service, subscription hub and WebSocket gateway; ``RPC``,
    ``HUB`` and ``WEBSOCKETS`` are the default network's. The lane answers ``POST /rpc``
    and ``POST /rpc/<chain id or alias>`` of every network."""
    telemetry = app[TELEMETRY]
    networks = app[NETWORKS]
    limiter = limiter_for(app)
    counter = ConnectionCounter()  # a caller's WebSocket connections, across networks
    follow = []
    for network in networks:
        rpc = network.rpc
        chain_id = network.chain_id
        service = network.service = RpcService(
            rpc,
            pool=network.pool,
            cache=network.cache if rpc.cache_enabled else None,
            limiter=limiter,
            shared_cache=RedisCache(app[REDIS], namespace=chain_id)
            if REDIS in app and rpc.cache_enabled
            else None,
            metrics=network.metrics,
            tracer=telemetry.tracer,
            limit_scope=network.label if network.settings.rpc.own_limits else "",
        )
        hub = network.hub = SubscriptionHub(
            network.pool,
            app[UPSTREAM_SESSION],
            network.metrics,
            max_feeds=rpc.ws_max_upstream_subscriptions,
            poll_s=rpc.subscription_poll_s,
        )
        websockets = network.websockets = WebSocketGateway(service, hub, counter, network.metrics)
        answerer = rpc_answerer(service, app)
        if network is networks.default:
            register(app, "POST", "/rpc", answerer)
            app[RPC], app[HUB], app[WEBSOCKETS] = service, hub, websockets
        for name in network.names:
            register(app, "POST", f"/rpc/{name}", answerer, route="/rpc/{network}")
        if rpc.push_heads and hub.has_websocket_upstream():
            follow.append(_follow_heads(network.pool, hub))
    async with running(*follow, name="head-push"):
        try:
            yield
        finally:
            for network in networks:
                if network.hub is not None:
                    await network.hub.close()


async def _follow_heads(pool: UpstreamPool, hub: SubscriptionHub) -> None:
    """New heads as the nodes announce them (newHeads), so ``latest`` moves at once."""

    def announced(_header: bytes) -> bool:
        pool.refresh_heads_soon()
        return True

    try:
        await hub.subscribe("newHeads", [], announced, internal=True)
    except SubscriptionRefused as refused:
        log.warning("new heads are polled only: newHeads refused", detail=refused.message)


__all__ = ["HUB", "RPC", "routes", "rpc_caller", "rpc_ctx"]
