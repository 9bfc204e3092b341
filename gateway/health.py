"""Operations endpoints: liveness, readiness and the metrics exposition."""

from __future__ import annotations

import asyncio
from typing import Literal

from aiohttp import web
from pydantic import BaseModel, Field
from redis.asyncio import Redis
from redis.exceptions import RedisError

from gateway.config import SETTINGS
from gateway.errors import StorageUnavailable
from gateway.openapi import Parameter, operation
from gateway.rpc.networks import NETWORKS
from gateway.rpc.upstream import check_upstream
from gateway.storage import STORAGE, Database
from gateway.storage.redis import REDIS
from gateway.telemetry import metrics_handler

routes = web.RouteTableDef()

_OK = b'{"status":"ok"}'


class Health(BaseModel):
    """The process is alive."""

    status: Literal["ok"]


class Readiness(BaseModel):
    """What each dependency answered."""

    status: Literal["ok", "unavailable"]
    checks: dict[str, str] = Field(
        description="`storage` and `upstream:<name>` (with several networks "
        "`upstream:<chain id>:<name>`) -> `ok` or why not."
    )


class NotReady(BaseModel):
    """Not ready: the error body plus the checks that failed."""

    error: dict[str, str]
    checks: dict[str, str]


@routes.get("/healthz")
@operation(
    summary="Liveness: 200 while the process runs", tag="operations", responses={200: Health}
)
async def healthz(_request: web.Request) -> web.Response:
    return web.Response(body=_OK, content_type="application/json")


@routes.get("/readyz")
@operation(
    summary="Readiness: the chain upstream(s) of every network and storage answer",
    tag="operations",
    parameters=(
        Parameter("network", "query", "only this network's nodes (a chain id or an alias)"),
    ),
    responses={200: Readiness, 503: NotReady},
)
async def readyz(request: web.Request) -> web.Response:
    """Ready when storage (and Redis) answer and every network has a node on its chain
    that answers; ``?network=`` asks of one network's nodes only (with storage)."""
    settings = request.app[SETTINGS]
    timeout_s = settings.upstream_pool.readiness_timeout_s
    networks = request.app[NETWORKS]
    asked = request.query.get("network")
    chosen = list(networks) if asked is None else [networks.named(asked)]
    several = len(networks) > 1
    named = {"storage": _storage_check(request.app[STORAGE], timeout_s)}
    if (client := request.app.get(REDIS)) is not None:
        named["redis"] = _redis_check(client, timeout_s)
    prefixes = {}
    for network in chosen:
        # One network: `upstream:<name>` as ever; several: `upstream:<chain id>:<name>`.
        prefix = prefixes[network.label] = f"upstream:{network.label}:" if several else "upstream:"
        for upstream in network.pool.upstreams:
            named[prefix + upstream.name] = check_upstream(
                upstream, chain_id=network.settings.chain_id, timeout_s=timeout_s
            )
    checks = dict(zip(named, await asyncio.gather(*named.values()), strict=True))
    failed = [name for name in ("storage", "redis") if checks.get(name, "ok") != "ok"]
    for network in chosen:
        prefix = prefixes[network.label]
        if not any(state == "ok" for name, state in checks.items() if name.startswith(prefix)):
            which = f"network {network.label} upstream" if several else "upstream"
            failed.append(which if network.pool.upstreams else f"{which} (none configured)")
    if not failed:
        return web.json_response({"status": "ok", "checks": checks})
    body = {
        "error": {"code": "not_ready", "message": f"not ready: {', '.join(failed)} unavailable"},
        "checks": checks,
    }
    return web.json_response(body, status=503)


async def _storage_check(database: Database, timeout_s: float) -> str:
    try:
        await database.ping(timeout_s)
    except StorageUnavailable:
        return "unreachable"
    return "ok"


async def _redis_check(client: Redis, timeout_s: float) -> str:
    try:
        async with asyncio.timeout(timeout_s):
            await client.ping()  # type: ignore[misc]  # redis-py types ping as sync-or-async
    except (TimeoutError, RedisError, OSError):
        return "unreachable"
    return "ok"


@routes.get("/metrics")
@operation(
    summary="Prometheus metrics (OpenMetrics with exemplars when asked for)",
    tag="operations",
    responses={200: "Prometheus text or OpenMetrics exposition"},
    content_type="text/plain",
)
async def metrics(request: web.Request) -> web.StreamResponse:
    return await metrics_handler(request)
