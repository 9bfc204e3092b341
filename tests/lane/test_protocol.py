"""The lane in a running gateway on a real anvil: what it answers is what aiohttp would
have answered, on the same connections as everything aiohttp answers, in order."""

from __future__ import annotations

import asyncio
import socket

import aiohttp
import pytest

from gateway.app import create_app
from gateway.lane.protocol import GatewayRunner
from tests.helpers.lane import Connection, LaneTestServer, answered, exchange, post
from tests.helpers.metrics import sample

CHAIN_ID = {"jsonrpc": "2.0", "id": 7, "method": "eth_chainId", "params": []}


def call(method: str, params=None, call_id: int = 1, **kwargs) -> bytes:
    payload = {"jsonrpc": "2.0", "id": call_id, "method": method, "params": params or []}
    return post(payload, **kwargs)


@pytest.fixture(name="start")
async def _start(anvil, make_settings, spans):
    """start(lane=True, **env) -> a running gateway on the session's anvil."""
    servers: list[LaneTestServer] = []

    async def start(*, lane: bool = True, runner_kwargs=None, **env) -> LaneTestServer:
        env = {
            "GATEWAY_SERVER__LANE": str(lane).lower(),
            "GATEWAY_RPC__ANONYMOUS__RATE_PER_S": "100000",
            "GATEWAY_RPC__ANONYMOUS__BURST": "100000",
            **env,
        }
        settings = make_settings(upstreams=[anvil.url], GATEWAY_CHAIN_ID="31337", **env)
        server = LaneTestServer(create_app(settings, span_exporters=[spans]))
        await server.start_server(**(runner_kwargs or {}))
        servers.append(server)
        return server

    yield start
    for server in servers:
        await server.close()


async def metrics_text(server: LaneTestServer) -> str:
    async with aiohttp.ClientSession() as session, session.get(server.make_url("/metrics")) as r:
        return await r.text()


async def test_a_cached_read_gets_the_reply_aiohttp_would_give(start):
    lane, plain = await start(), await start(lane=False)
    same_id = {"X-Request-ID": "req-1"}
    for server in (lane, plain):
        (miss, hit) = await exchange(server, post(CHAIN_ID), post(CHAIN_ID, headers=same_id))
        assert miss.status == 200
        server.replies = (miss, hit)  # type: ignore[attr-defined]
    assert answered(lane) == 2  # the miss (from the node) and the hit (from the cache)
    assert answered(plain) == 0

    def stable(headers, *varying):
        """Headers with the values that differ between any two answers left out."""
        return [(k, "" if k in {"Date", "Server-Timing", *varying} else v) for k, v in headers]

    for ours, theirs in zip(lane.replies, plain.replies, strict=True):  # type: ignore[attr-defined]
        assert (ours.status, ours.reason) == (theirs.status, theirs.reason)
        assert ours.json() == theirs.json()
        assert stable(ours.headers, "X-Request-ID") == stable(theirs.headers, "X-Request-ID")
    ours, theirs = lane.replies[1], plain.replies[1]  # type: ignore[attr-defined]
    assert ours.body == theirs.body
    assert stable(ours.headers) == stable(theirs.headers)
    assert ours.header("X-Gateway-Cache") == "hit"
    assert lane.replies[0].header("X-Gateway-Cache") == "miss"  # type: ignore[attr-defined]
    assert ours.header("X-Request-ID") == "req-1"
    assert ours.json() == {"jsonrpc": "2.0", "id": 7, "result": hex(31337)}
    assert ours.header("Date").endswith(" GMT")


async def test_the_lane_counts_and_logs_what_it_answers(start, logs):
    server = await start()
    await exchange(server, post(CHAIN_ID))  # a miss: the node's answer fills the cache
    before = await metrics_text(server)
    replies = await exchange(server, *[post(CHAIN_ID)] * 5)
    assert [r.status for r in replies] == [200] * 5
    assert answered(server) == 6
    after = await metrics_text(server)

    def delta(name, **labels):
        return (sample(after, name, **labels) or 0) - (sample(before, name, **labels) or 0)

    http = {"method": "POST", "route": "/rpc", "status": "200"}
    assert delta("gateway_http_requests_total", **http) == 5
    assert delta("gateway_rpc_cache_requests_total", result="hit") == 5
    ok = {"method": "eth_chainId", "tier": "anonymous", "outcome": "ok"}
    assert delta("gateway_rpc_requests_total", **ok) == 5
    ids = {r.header("X-Request-ID") for r in replies}
    assert len(ids) == 5
    lines = [line for line in logs.events("request") if line.get("request_id") in ids]
    assert len(lines) == 5
    assert {(line["route"], line["status"], line["client_ip"]) for line in lines} == {
        ("/rpc", 200, "127.0.0.1")
    }


async def test_misses_and_other_requests_share_the_connection_in_order(start):
    server = await start()
    await exchange(server, post(CHAIN_ID))
    replies = await exchange(
        server,
        call("eth_chainId", call_id=1),
        call("eth_blockNumber", call_id=2),  # head-scoped: fetched by aiohttp's path
        b"GET /healthz HTTP/1.1\r\nHost: gateway\r\n\r\n",
        call("eth_chainId", call_id=3, headers={"Authorization": "Bearer nonsense"}),
        call("eth_chainId", call_id=4),
        call("no_such_method", call_id=5),
        post(b"{not json".decode(), path="/rpc"),
    )
    assert [r.status for r in replies] == [200, 200, 200, 401, 200, 200, 200]
    assert replies[0].json()["id"] == 1
    assert replies[1].json()["id"] == 2
    assert replies[2].json() == {"status": "ok"}
    assert replies[4].json() == {"jsonrpc": "2.0", "id": 4, "result": hex(31337)}
    assert replies[5].json()["error"]["code"] == -32601
    # The two calls before /healthz (a hit and a miss); from /healthz on, aiohttp's.
    assert answered(server) == 1 + 2


async def test_pipelined_requests_are_answered_in_order(start):
    server = await start()
    await exchange(server, post(CHAIN_ID))
    connection = await Connection.open(server)
    ids = list(range(10, 20))
    burst = b"".join(
        call("eth_blockNumber" if i % 3 == 0 else "eth_chainId", call_id=i) for i in ids
    )
    await connection.send(burst + b"GET /healthz HTTP/1.1\r\nHost: gateway\r\n\r\n")
    replies = [await connection.reply() for _ in range(len(ids) + 1)]
    connection.close()
    assert [r.json()["id"] for r in replies[:-1]] == ids
    assert replies[-1].json() == {"status": "ok"}
    assert answered(server) >= 1  # the first chainId at least: aiohttp holds the rest after a miss


async def test_requests_sent_before_the_clients_end_are_all_answered(start):
    """A client that sends its requests and then half-closes gets every answer the lane
    made, then the connection's end: the replies held for the connection go out before it
    closes. (aiohttp closes such a connection without answering; a miss in flight is
    answered by the lane too, ``eof_received``.)"""
    server = await start()
    await exchange(server, post(CHAIN_ID))
    # Sent and ended before the server's loop runs again, more than one read takes: on
    # uvloop the requests and the end then arrive in one pass, before its replies go out.
    burst = b"".join(call("eth_chainId", call_id=i) for i in range(2000))
    assert len(burst) > 4 * 65536
    sock = socket.create_connection((server.host, server.port))
    sock.sendall(burst)
    sock.shutdown(socket.SHUT_WR)
    sock.setblocking(False)
    connection = Connection(*await asyncio.open_connection(sock=sock))
    replies = [await connection.reply() for _ in range(2000)]
    assert [r.json()["id"] for r in replies] == list(range(2000))
    assert await connection.closed()
    connection.close()
    assert answered(server) == 2001


async def test_a_request_arriving_a_byte_at_a_time_is_answered(start):
    server = await start()
    await exchange(server, post(CHAIN_ID))
    connection = await Connection.open(server)
    for byte in post(CHAIN_ID):
        await connection.send(bytes([byte]))
        await asyncio.sleep(0)
    reply = await connection.reply()
    connection.close()
    assert reply.json()["result"] == hex(31337)
    assert answered(server) == 2


async def test_a_connection_that_starts_elsewhere_is_aiohttps(start):
    """A connection whose first request is not for a lane route (a probe, records) never
    pays for framing: aiohttp serves all of it, cached reads included."""
    server = await start()
    await exchange(server, post(CHAIN_ID))
    health = b"GET /healthz HTTP/1.1\r\nHost: gateway\r\n\r\n"
    replies = await exchange(server, health, post(CHAIN_ID), post(CHAIN_ID))
    assert [r.status for r in replies] == [200, 200, 200]
    assert replies[2].json()["result"] == hex(31337)
    assert answered(server) == 1  # the first connection's only


async def test_a_first_request_cut_inside_its_request_line_is_still_the_lanes(start):
    server = await start()
    await exchange(server, post(CHAIN_ID))
    connection = await Connection.open(server)
    raw = post(CHAIN_ID)
    for piece in (raw[:2], raw[2:7], raw[7:]):  # "PO", "ST /r", "pc HTTP/1.1..."
        await connection.send(piece)
        await asyncio.sleep(0.02)
    assert (await connection.reply()).json()["result"] == hex(31337)
    connection.close()
    assert answered(server) == 2


async def test_a_body_split_from_its_head_reaches_aiohttp_whole(start):
    """A request the lane does not answer hands the connection over at its first byte: the
    rest of its body goes to aiohttp, and so does every request after it."""
    server = await start()
    await exchange(server, post(CHAIN_ID))
    raw = call(  # a header the lane leaves to aiohttp
        "eth_getBalance", ["0x" + "11" * 20, "latest"], call_id=8, headers={"X-Note": "split"}
    )
    connection = await Connection.open(server)
    await connection.send(raw[:-10])
    await asyncio.sleep(0.05)
    await connection.send(raw[-10:] + post(CHAIN_ID))
    first, second = await connection.reply(), await connection.reply()
    assert first.json() == {"jsonrpc": "2.0", "id": 8, "result": "0x0"}
    assert second.json()["id"] == 7
    await connection.send(post(CHAIN_ID))
    assert (await connection.reply()).json()["id"] == 7
    connection.close()
    assert answered(server) == 1  # the first connection's only: this one is aiohttp's


@pytest.mark.parametrize(
    "smuggled",
    [
        (
            b"POST /rpc HTTP/1.1\r\nHost: gateway\r\nContent-Length: 4\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
        ),
        b"POST /rpc HTTP/1.1\r\nHost: gateway\r\nContent-Length: 0\r\nContent-Length: 44\r\n\r\n",
        b"POST /rpc HTTP/1.1\r\nHost: gateway\nContent-Length: 44\r\nContent-Length: 0\r\n\r\n",
    ],
)
async def test_ambiguous_framing_is_refused_by_aiohttp_and_ends_the_connection(start, smuggled):
    server = await start()
    await exchange(server, post(CHAIN_ID))
    connection = await Connection.open(server)
    await connection.send(post(CHAIN_ID) + smuggled + post(CHAIN_ID))
    # aiohttp parses all that one read brings before it answers any, and its 400 drops the
    # rest: the lane answers none of these either (test_differential_framing.py).
    refused = await connection.reply()
    assert refused.status == 400
    assert await connection.closed()
    connection.close()
    assert answered(server) == 1  # the warm-up only


async def test_an_oversized_body_gets_aiohttps_413(start):
    server = await start(GATEWAY_SERVER__MAX_BODY_BYTES="2048")
    big = {"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": ["x" * 4000]}
    (reply,) = await exchange(server, post(big))
    assert reply.status == 413
    assert answered(server) == 0


async def test_the_rate_limit_counts_a_lane_answer_once(start):
    server = await start(
        GATEWAY_RPC__ANONYMOUS__RATE_PER_S="0.01", GATEWAY_RPC__ANONYMOUS__BURST="4"
    )
    plain = await start(
        lane=False, GATEWAY_RPC__ANONYMOUS__RATE_PER_S="0.01", GATEWAY_RPC__ANONYMOUS__BURST="4"
    )
    outcomes = {}
    for each in (server, plain):
        replies = await exchange(each, *[post(CHAIN_ID, headers={"X-Request-ID": "r"})] * 5)
        outcomes[each] = replies
        assert [r.status for r in replies] == [200, 200, 200, 200, 429]
        limited = replies[-1].json()
        assert limited["error"]["code"] == -32005
        assert replies[-1].header("Retry-After") == "100"
        text = await metrics_text(each)
        labels = {"method": "eth_chainId", "tier": "anonymous", "outcome": "rate_limited"}
        assert sample(text, "gateway_rpc_requests_total", **labels) == 1
    assert answered(server) == 5  # the miss, the three hits and the 429
    ours, theirs = outcomes[server][-1], outcomes[plain][-1]
    waits = [reply.json()["error"]["data"].pop("retryAfterSeconds") for reply in (ours, theirs)]
    assert all(99 < wait <= 100 for wait in waits)  # time passes between the two
    mine, aiohttps = ours.json(), theirs.json()
    for each in (mine, aiohttps):
        each["error"]["data"].pop("retryAfterSeconds")
    assert mine == aiohttps
    unstable = {"Date", "Content-Length"}
    assert [h for h in ours.headers if h[0] not in unstable] == [
        h for h in theirs.headers if h[0] not in unstable
    ]


async def test_a_sampled_answer_has_its_server_span_and_rpc_span(start, spans):
    server = await start(OTEL_TRACES_SAMPLER="always_on")
    await exchange(server, post(CHAIN_ID))
    spans.clear()
    (reply,) = await exchange(server, post(CHAIN_ID, headers={"X-Request-ID": "traced-1"}))
    assert answered(server) == 2  # and the warm-up miss
    by_name = {span.name: span for span in spans.get_finished_spans()}
    server_span, rpc_span = by_name["POST /rpc"], by_name["rpc eth_chainId"]
    assert rpc_span.parent is not None
    assert rpc_span.parent.span_id == server_span.context.span_id
    assert rpc_span.context.trace_id == server_span.context.trace_id
    assert server_span.attributes["http.response.status_code"] == 200
    assert server_span.attributes["gateway.request_id"] == "traced-1"
    assert rpc_span.attributes["gateway.cache"] == "hit"
    assert reply.status == 200


async def test_the_lane_samples_at_the_configured_ratio(start, spans):
    """Its own decision, kept: a request it declined would be decided again by aiohttp."""
    server = await start(
        OTEL_TRACES_SAMPLER="parentbased_traceidratio", OTEL_TRACES_SAMPLER_ARG="0.5"
    )
    await exchange(server, post(CHAIN_ID))
    spans.clear()
    await exchange(server, *[post(CHAIN_ID)] * 400)
    assert answered(server) == 401  # and the warm-up miss
    sampled = [span for span in spans.get_finished_spans() if span.name == "POST /rpc"]
    assert 140 <= len(sampled) <= 260  # 200 expected; 6 standard deviations either side


async def test_the_keep_alive_clock_restarts_with_each_lane_answer(start):
    server = await start(runner_kwargs={"keepalive_timeout": 1.0})
    await exchange(server, post(CHAIN_ID))
    connection = await Connection.open(server)
    for _ in range(4):  # 1.8 s in all, longer than the timeout, idle for 0.6 s at most
        await connection.send(post(CHAIN_ID))
        assert (await connection.reply()).status == 200
        await asyncio.sleep(0.6)
    assert answered(server) == 5  # and the warm-up miss
    assert await connection.closed()  # idle past the timeout: closed by the server
    connection.close()


async def test_an_answerer_that_fails_leaves_the_request_to_aiohttp(start, logs):
    server = await start()
    await exchange(server, post(CHAIN_ID))
    runner = server.runner
    assert isinstance(runner, GatewayRunner)
    assert runner.lane is not None

    def broken(request):
        raise RuntimeError("a bug")

    runner.lane.routes[(b"POST", b"/rpc")] = broken
    (reply,) = await exchange(server, post(CHAIN_ID))
    assert reply.json()["result"] == hex(31337)
    assert answered(server) == 1  # the warm-up miss only
    assert list(logs.events("lane answer failed; served by aiohttp"))


async def test_a_websocket_upgrade_after_lane_answers_is_aiohttps(start):
    server = await start()
    await exchange(server, post(CHAIN_ID))
    async with aiohttp.ClientSession() as session:
        async with session.post(server.make_url("/rpc"), json=CHAIN_ID) as response:
            assert (await response.json())["result"] == hex(31337)
        async with session.ws_connect(server.make_url("/rpc")) as ws:
            await ws.send_json(CHAIN_ID)
            assert (await ws.receive_json())["result"] == hex(31337)
    assert answered(server) == 2  # and the warm-up miss
