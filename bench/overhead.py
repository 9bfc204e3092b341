"""The gateway's own cost per request, layer by layer, in microseconds, in one run.

    .venv/bin/python bench/overhead.py [--count 1000] [--repeats 21]

Part 1 drives apps in process through aiohttp's own HTTP protocol (bench/inproc.py: HTTP
parsing, routing, middlewares, handler, response rendering; no sockets), adding the
gateway's layers one at a time to a bare app; each row is the best of ``--repeats`` runs
of ``--count`` requests, and "added" is its cost over the row before. Part 2 times each
piece of per-request work on its own (timeit, best of 7). Part 3 is the whole app on a
real anvil: /healthz and a cached JSON-RPC answer. The README's table is this output.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import tempfile
import timeit
from pathlib import Path
from typing import ClassVar

from aiohttp import web
from inproc import http_get, http_post, measure_all
from opentelemetry.trace import SpanKind

from gateway.app import create_app
from gateway.chain import DevChain
from gateway.config import SETTINGS, LogSettings, Settings, load_settings
from gateway.cors import cors_middleware
from gateway.error_responses import render_exception
from gateway.health import healthz
from gateway.lane.framing import read_frame
from gateway.ratelimit import Limit, MemoryRateLimiter
from gateway.rpc import jsonrpc
from gateway.rpc.cache import MemoryCache, cache_key, cache_rule
from gateway.rpc.coalesce import Coalescer
from gateway.rpc.policy import MethodPolicy
from gateway.rpc.pool import UpstreamPool
from gateway.rpc.service import _reply_with_result
from gateway.rpc.upstream import Upstream
from gateway.telemetry import Metrics, configure_logging, request_middleware, telemetry_ctx
from gateway.telemetry.logging import active_sink, write_access_line
from gateway.telemetry.middleware import request_id_for
from gateway.telemetry.sampling import TraceDecider, parse_traceparent
from gateway.telemetry.tracing import build_tracer_providers

CHAIN_ID = b'{"jsonrpc":"2.0","id":1,"method":"eth_chainId","params":[]}'
BLOCK_NUMBER = b'{"jsonrpc":"2.0","id":1,"method":"eth_blockNumber","params":[]}'
ORIGIN = "https://app.example"
PRODUCTION = {"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.1"}


def settings_for(work: Path, **env: str) -> Settings:
    return load_settings(
        None,
        {
            "GATEWAY_LOG_FORMAT": "json",
            "GATEWAY_DATABASE_URL": f"sqlite:///{work / 'gw.db'}",
            "GATEWAY_IDENTITY__KEYS_DIR": str(work / "keys"),
            "GATEWAY_CHAIN_ID": "31337",
            "GATEWAY_RPC__ANONYMOUS__RATE_PER_S": "1000000",
            "GATEWAY_RPC__ANONYMOUS__BURST": "1000000",
            **env,
        },
    )


def bare_json_app() -> web.Application:
    async def handler(_request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    app = web.Application()
    app.router.add_get("/healthz", handler)
    return app


def bare_app() -> web.Application:
    app = web.Application()
    app.router.add_get("/healthz", healthz)
    return app


def middleware_app(settings: Settings, *, cors: bool = False) -> web.Application:
    """The gateway's middlewares around /healthz, nothing else of the app."""
    app = web.Application(
        middlewares=[
            request_middleware(render_exception),
            *([cors_middleware((ORIGIN,))] if cors else []),
        ]
    )
    app[SETTINGS] = settings
    app.cleanup_ctx.append(telemetry_ctx)
    app.router.add_get("/healthz", healthz)
    return app


def bare_rpc_app() -> web.Application:
    reply = b'{"jsonrpc":"2.0","id":1,"result":"0x7a69"}'

    async def handler(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(body=reply, content_type="application/json")

    app = web.Application()
    app.router.add_post("/rpc", handler)
    return app


def print_rows(title: str, rows: list[tuple[str, float]]) -> None:
    print(title)
    print(f"  {'layers':<64} {'us/req':>8} {'added':>8}")
    previous = None
    for name, cost in rows:
        added = "" if previous is None else f"{cost - previous:+8.1f}"
        print(f"  {name:<64} {cost:>8.1f} {added:>8}")
        previous = cost


async def part_one(work: Path, count: int, repeats: int) -> None:
    off = settings_for(work, GATEWAY_TRACING__ENABLED="false", GATEWAY_LOG__ACCESS_LOG="false")
    sampled = settings_for(work, GATEWAY_LOG__ACCESS_LOG="false", **PRODUCTION)
    logged = settings_for(work, **PRODUCTION)
    always = settings_for(work, OTEL_TRACES_SAMPLER="always_on")
    get = http_get("/healthz")
    rows = [
        ("bare aiohttp app, json_response (bench/healthz.py's baseline)", bare_json_app, get),
        ("bare aiohttp app, the gateway's /healthz handler", bare_app, get),
        (
            "+ request middleware: request id, security headers, metrics, errors",
            lambda: middleware_app(off),
            get,
        ),
        (
            "+ trace decision, production sampling (1 in 10 an SDK span)",
            lambda: middleware_app(sampled),
            get,
        ),
        ("+ JSON access line", lambda: middleware_app(logged), get),
        (
            "  sampler always_on instead (an SDK span every request)",
            lambda: middleware_app(always),
            get,
        ),
        (
            "+ CORS (a browser's Origin, allowed)",
            lambda: middleware_app(always, cors=True),
            http_get("/healthz", {"Origin": ORIGIN}),
        ),
    ]
    measured = await measure_all(rows, count=count, repeats=repeats)
    print_rows("Part 1: GET /healthz in process, the layers added one at a time", measured)


def best_us(statement, number: int = 20000) -> float:
    return min(timeit.repeat(statement, number=number, repeat=7)) / number * 1e6


def part_two(work: Path) -> None:
    settings = settings_for(work, **PRODUCTION)
    metrics = Metrics.create(version="bench", commit="bench")
    decider = TraceDecider(settings.tracing)
    providers = build_tracer_providers(settings.tracing, version="bench")
    server_tracer = providers.decided.get_tracer("bench")
    header = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"

    class Req:
        headers: ClassVar[dict[str, str]] = {}

    policy = MethodPolicy(settings.rpc.anonymous.allow, settings.rpc.anonymous.deny)
    limiter = MemoryRateLimiter()
    limit = Limit(1e9, 1e9)
    cache = MemoryCache(1 << 20)
    key = cache_key("eth_chainId", [])
    cache.put(key, b'"0x7a69"', height=-1, head=0)
    upstreams = [
        Upstream(config)  # routing only, no calls
        for config in settings_for(work, GATEWAY_UPSTREAMS="http://a:1,http://b:2").upstreams
    ]
    pool = UpstreamPool(
        upstreams, settings.rpc, chain_id=31337, metrics=metrics.of_network("31337")
    )
    for upstream in upstreams:
        upstream.healthy = True
        upstream.head.latest = 100
    call = jsonrpc.parse_body(CHAIN_ID, max_batch=100).items[0]
    coalescer: Coalescer[bytes] = Coalescer()

    async def answer() -> bytes:
        return b""

    loop = asyncio.new_event_loop()

    def coalesced() -> None:
        with contextlib.suppress(StopIteration):
            coalescer.run(key, answer).send(None)

    def span() -> None:
        server_tracer.start_span("GET /healthz", kind=SpanKind.SERVER).end()

    def access_line() -> None:
        write_access_line(
            method="GET",
            route="/healthz",
            path="/healthz",
            status=200,
            duration_s=0.00005,
            body_bytes=15,
            client_ip="127.0.0.1",
            request_id="a" * 32,
            trace_id=2**127 + 1,
            span_id=2**63 + 1,
        )

    def lookup() -> bytes | None:
        rule = cache_rule("eth_chainId", [], finalized=pool.finalized)
        found = cache.get(cache_key("eth_chainId", []), head=0) if rule is not None else None
        return _reply_with_result(1, found) if found is not None else None

    raw_post = http_post("/rpc", CHAIN_ID)

    pieces = [
        ("request id (random 128 bits, hex)", lambda: request_id_for(Req())),  # type: ignore[arg-type]
        ("trace decision, no parent", lambda: decider.decide(None)),
        (
            "trace decision, W3C traceparent parsed",
            lambda: decider.decide(parse_traceparent(header)),
        ),
        ("SDK server span started and ended (sampled, no exporter)", span),
        (
            "HTTP metrics (counter + histogram child)",
            lambda: metrics.observe_http("GET", "/healthz", 200, 0.0003, None),
        ),
        (
            "access line: fields kept, rendered when the batch is written",
            access_line,
        ),
        ("JSON-RPC parse (one call)", lambda: jsonrpc.parse_body(CHAIN_ID, max_batch=100)),
        ("method policy", lambda: policy.check("eth_chainId")),
        ("rate limit (in process)", lambda: limiter.acquire_now("rpc:127.0.0.1", limit)),
        ("pool pick (2 nodes, weighted order)", lambda: pool.candidates(min_head=100)),
        ("cache lookup: rule, key, get, reply with the caller's id", lookup),
        ("coalescing: a call nobody shares", coalesced),
        ("node body of a call (as the client sent it)", call.body),  # type: ignore[union-attr]
        (
            "lane: framing a request (strict HTTP/1.1, every request it sees)",
            lambda: read_frame(raw_post, 0, max_body=1 << 20),
        ),
    ]

    async def measured() -> list[tuple[str, float]]:
        sink = active_sink()
        assert sink is not None
        async with sink.batching():  # as in a serving app: log lines go out in batches
            return [(name, best_us(statement)) for name, statement in pieces]

    print("Part 2: each piece of per-request work on its own")
    print(f"  {'piece':<64} {'us':>8}")
    for name, cost in loop.run_until_complete(measured()):
        print(f"  {name:<64} {cost:>8.2f}")
    loop.close()
    providers.main.shutdown()


async def part_three(work: Path, count: int, repeats: int) -> None:
    with DevChain.start(log_dir=work / "anvil") as chain:
        settings = settings_for(work, GATEWAY_UPSTREAMS=chain.url, **PRODUCTION)
        always = settings_for(work, GATEWAY_UPSTREAMS=chain.url, OTEL_TRACES_SAMPLER="always_on")
        no_lane = settings_for(
            work, GATEWAY_UPSTREAMS=chain.url, GATEWAY_SERVER__LANE="false", **PRODUCTION
        )
        unexplained = settings_for(
            work, GATEWAY_UPSTREAMS=chain.url, GATEWAY_RPC__EXPLAIN_HEADERS="false", **PRODUCTION
        )
        uncached = settings_for(
            work,
            GATEWAY_UPSTREAMS=chain.url,
            GATEWAY_RPC__CACHE_ENABLED="false",
            GATEWAY_RPC__ANONYMOUS__RATE_PER_S="1000000",
            GATEWAY_RPC__ANONYMOUS__BURST="1000000",
            **PRODUCTION,
        )
        post = http_post("/rpc", CHAIN_ID)
        rows = [
            ("bare aiohttp app: GET /healthz", bare_json_app, http_get("/healthz")),
            ("gateway app: GET /healthz", lambda: create_app(settings), http_get("/healthz")),
            ("bare aiohttp app: POST, read the body, a fixed JSON-RPC reply", bare_rpc_app, post),
            ("gateway app: POST /rpc eth_chainId, cache hit", lambda: create_app(settings), post),
            ("  the same, every request sampled (always_on)", lambda: create_app(always), post),
            ("  the same, lane off (aiohttp's request path)", lambda: create_app(no_lane), post),
            (
                "  the same, no X-Gateway-* headers (rpc.explain_headers=false)",
                lambda: create_app(unexplained),
                post,
            ),
            (
                "gateway app: POST /rpc eth_blockNumber, cache off (a node call)",
                lambda: create_app(uncached),
                http_post("/rpc", BLOCK_NUMBER),
            ),
        ]
        measured = await measure_all(rows, count=count, repeats=repeats)
    print("Part 3: the whole app (production sampling, JSON access line, metrics) on anvil")
    print(f"  {'request':<64} {'us/req':>8} {'vs bare':>8}")
    for index, (name, cost) in enumerate(measured):
        base = measured[0][1] if index < 2 else measured[2][1]
        print(f"  {name:<64} {cost:>8.1f} {cost - base:>+8.1f}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=21)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-overhead-"))
    with open(os.devnull, "wb") as sink:
        configure_logging(LogSettings(level="info", format="json"), stream=sink)
        print(
            f"python {sys.version.split()[0]}, one core, microseconds per request (less is better)"
        )
        asyncio.run(part_one(work, args.count, args.repeats))
        print()
        part_two(work)
        print()
        asyncio.run(part_three(work, args.count, args.repeats))


if __name__ == "__main__":
    main()
