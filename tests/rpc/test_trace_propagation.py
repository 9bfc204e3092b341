"""The node sees the caller's trace: traceparent flows from the frontend through to it."""

import pytest
from aiohttp import web
from opentelemetry.trace import SpanKind

from gateway.app import create_app
from tests.helpers.fake_node import fake_node_app
from tests.helpers.lane import LaneTestServer
from tests.rpc.conftest import Rpc

pytestmark = pytest.mark.integration

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"


@pytest.fixture(name="recording_node")
async def _recording_node(aiohttp_server):
    """Records the headers of every call (what anvil cannot show us)."""
    seen: list = []

    async def on_call(_request: web.Request, body: dict) -> web.Response:
        return web.json_response({"jsonrpc": "2.0", "id": body["id"], "result": "0x7a69"})

    server = await aiohttp_server(fake_node_app(on_call, seen))
    server.seen = seen
    return server


@pytest.mark.parametrize("flags", ["01", "00"])
async def test_traceparent_reaches_the_node(
    aiohttp_client, recording_node, make_settings, rpc_env, spans, flags
):
    settings = make_settings(
        upstreams=[f"http://127.0.0.1:{recording_node.port}"],
        GATEWAY_RPC__CACHE_ENABLED="false",
        **rpc_env,
    )
    client = await aiohttp_client(LaneTestServer(create_app(settings, span_exporters=[spans])))
    recording_node.seen.clear()
    headers = {"traceparent": f"00-{TRACE_ID}-00f067aa0ba902b7-{flags}"}
    await Rpc(client).call("eth_getBalance", ["0x" + "00" * 20, "latest"], headers=headers)
    headers_seen = [entry["headers"] for entry in recording_node.seen]
    (sent,) = [h for h in headers_seen if TRACE_ID in h.get("traceparent", "")]
    version, trace_id, parent_id, sampled = sent["traceparent"].split("-")
    assert (version, trace_id, sampled) == ("00", TRACE_ID, flags)
    if flags == "01":  # sampled: the node's parent is our client span, under the rpc span
        client_span = next(
            s
            for s in spans.get_finished_spans()
            if s.kind is SpanKind.CLIENT and format(s.context.span_id, "016x") == parent_id
        )
        rpc_span = next(s for s in spans.get_finished_spans() if s.name == "rpc eth_getBalance")
        assert client_span.parent.span_id == rpc_span.context.span_id
    else:
        assert not spans.get_finished_spans() or all(
            format(s.context.trace_id, "032x") != TRACE_ID for s in spans.get_finished_spans()
        )


async def test_an_unsampled_request_still_gives_the_node_its_trace(
    aiohttp_client, recording_node, make_settings, rpc_env, spans, logs
):
    """No span object is made for it, yet the node and the access line share its ids."""
    settings = make_settings(
        upstreams=[f"http://127.0.0.1:{recording_node.port}"],
        GATEWAY_RPC__CACHE_ENABLED="false",
        OTEL_TRACES_SAMPLER="parentbased_traceidratio",
        OTEL_TRACES_SAMPLER_ARG="0",
        **rpc_env,
    )
    client = await aiohttp_client(LaneTestServer(create_app(settings, span_exporters=[spans])))
    recording_node.seen.clear()
    spans.clear()
    await Rpc(client).call("eth_getBalance", ["0x" + "00" * 20, "latest"])
    (sent,) = [
        entry["headers"]["traceparent"]
        for entry in recording_node.seen
        if not isinstance(entry["body"], list)  # the call, not a head poll
    ]
    version, trace_id, span_id, flags = sent.split("-")
    assert (version, flags) == ("00", "00")
    (line,) = [l for l in logs.events("request") if l["route"] == "/rpc"]
    assert (line["trace_id"], line["span_id"]) == (trace_id, span_id)
    assert int(trace_id, 16) != 0
    assert spans.get_finished_spans() == ()
