"""One /rpc request, exported over OTLP/HTTP to a real receiver: a server span, its JSON-RPC
span and the client span of the node call share one trace, and so does its log line."""

import asyncio
import json

import pytest
from aiohttp import web
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from tests.helpers.otlp import spans_of_export
from tests.helpers.processes import free_port, gateway_process, wait_http
from tests.helpers.waiting import eventually

pytestmark = pytest.mark.integration


@pytest.fixture(name="otlp_receiver")
async def _otlp_receiver(aiohttp_server):
    spans: list = []

    async def traces(request: web.Request) -> web.Response:
        assert request.content_type == "application/x-protobuf"
        spans.extend(spans_of_export(await request.read()))
        return web.Response(body=b"", content_type="application/x-protobuf")

    app = web.Application()
    app.router.add_post("/v1/traces", traces)
    server = await aiohttp_server(app)
    server.spans = spans
    return server


async def test_rpc_request_is_one_trace_in_otlp_and_logs(otlp_receiver, anvil, tmp_path):
    port = free_port()
    log_path = tmp_path / "gateway.log"
    process = gateway_process(
        ["serve", "--port", str(port)],
        {
            "GATEWAY_UPSTREAMS": anvil.url,
            "GATEWAY_CHAIN_ID": "31337",
            "GATEWAY_DATABASE_URL": f"sqlite:///{tmp_path / 'gw.db'}",
            "GATEWAY_IDENTITY__KEYS_DIR": str(tmp_path / "keys"),
            "GATEWAY_LOG_FORMAT": "json",
            "GATEWAY_RPC__CACHE_ENABLED": "false",
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{otlp_receiver.port}",
            "OTEL_SERVICE_NAME": "gateway-under-test",
            "OTEL_TRACES_SAMPLER": "always_on",
            "OTEL_BSP_SCHEDULE_DELAY": "100",
        },
        log_path,
    )
    try:
        await asyncio.to_thread(wait_http, f"http://127.0.0.1:{port}/healthz")
        import aiohttp

        async with aiohttp.ClientSession() as session:
            payload = {
                "jsonrpc": "2.0",
                "id": 7,
                "method": "eth_getBalance",
                "params": ["0x" + "22" * 20, "latest"],
            }
            async with session.post(f"http://127.0.0.1:{port}/rpc", json=payload) as response:
                assert (await response.json())["result"] == "0x0"
                request_id = response.headers["X-Request-ID"]
        await eventually(
            lambda: any(span.name == "POST /rpc" for _, span in otlp_receiver.spans),
            what="the server span at the receiver",
        )
    finally:
        process.terminate()
        await asyncio.to_thread(process.wait, 20)
    server = next(span for _, span in otlp_receiver.spans if span.name == "POST /rpc")
    trace = [span for _, span in otlp_receiver.spans if span.trace_id == server.trace_id]
    by_name = {span.name: span for span in trace}
    assert server.kind == Span.SPAN_KIND_SERVER
    assert by_name["rpc eth_getBalance"].parent_span_id == server.span_id
    client = next(span for span in trace if span.kind == Span.SPAN_KIND_CLIENT)
    assert client.parent_span_id == by_name["rpc eth_getBalance"].span_id
    assert {service for service, _ in otlp_receiver.spans} == {"gateway-under-test"}
    lines = [json.loads(line) for line in log_path.read_text().splitlines() if line.startswith("{")]
    (access,) = [
        line
        for line in lines
        if line.get("request_id") == request_id and line["event"] == "request"
    ]
    assert access["trace_id"] == server.trace_id.hex()
    assert access["span_id"] == server.span_id.hex()
