"""One request -> one access-log line, one server span, one metric sample, all correlated."""

import asyncio

import pytest
from opentelemetry.trace import SpanKind

from tests.helpers.metrics import sample
from tests.helpers.waiting import eventually

pytestmark = pytest.mark.integration


async def test_access_log_line_matches_span_and_response(gateway, spans, logs):
    response = await gateway.get("/readyz")
    assert response.status == 200
    (line,) = logs.events("request")
    server = [s for s in spans.get_finished_spans() if s.kind is SpanKind.SERVER]
    assert len(server) == 1
    assert server[0].name == "GET /readyz"
    assert line["trace_id"] == format(server[0].context.trace_id, "032x")
    assert line["span_id"] == format(server[0].context.span_id, "016x")
    assert line["request_id"] == response.headers["X-Request-ID"]
    assert line["route"] == "/readyz"
    assert line["status"] == 200
    assert line["method"] == "GET"
    assert line["bytes"] == int(response.headers["Content-Length"])
    assert line["client_ip"] == "127.0.0.1"
    assert line["duration_ms"] > 0
    assert line["level"] == "info"
    assert line["timestamp"].endswith("Z")


async def test_upstream_call_is_a_child_span_and_carries_traceparent(gateway, spans):
    await gateway.get("/readyz")
    finished = spans.get_finished_spans()
    (server,) = [s for s in finished if s.kind is SpanKind.SERVER]
    clients = [
        s
        for s in finished
        if s.kind is SpanKind.CLIENT and s.context.trace_id == server.context.trace_id
    ]
    assert clients, "the eth_chainId call to anvil made no client span in the request's trace"
    for client in clients:
        assert client.parent is not None
        assert client.parent.span_id == server.context.span_id


async def test_incoming_traceparent_is_continued(gateway, spans, logs):
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    parent_span = "00f067aa0ba902b7"
    response = await gateway.get(
        "/healthz", headers={"traceparent": f"00-{trace_id}-{parent_span}-01"}
    )
    assert response.status == 200
    (server,) = [s for s in spans.get_finished_spans() if s.kind is SpanKind.SERVER]
    assert format(server.context.trace_id, "032x") == trace_id
    assert format(server.parent.span_id, "016x") == parent_span
    assert logs.events("request")[0]["trace_id"] == trace_id


async def test_malformed_traceparent_starts_a_new_trace(gateway, spans):
    response = await gateway.get("/healthz", headers={"traceparent": "00-zzzz-yyyy-01"})
    assert response.status == 200
    (server,) = [s for s in spans.get_finished_spans() if s.kind is SpanKind.SERVER]
    assert server.parent is None


@pytest.mark.parametrize(
    "bad",
    ["", "has space", "x" * 129, "<script>", "id\twith\ttabs", "ünïcode", "-leading-dash"],
)
async def test_bad_request_ids_are_replaced(gateway, logs, bad):
    response = await gateway.get(
        "/healthz", headers={"X-Request-ID": bad.encode().decode("latin-1")}
    )
    returned = response.headers["X-Request-ID"]
    assert returned != bad
    assert len(returned) == 32
    assert logs.events("request")[0]["request_id"] == returned


async def test_sane_request_id_is_echoed(gateway, logs):
    response = await gateway.get("/healthz", headers={"X-Request-ID": "frontend-7f3a.42:retry-1"})
    assert response.headers["X-Request-ID"] == "frontend-7f3a.42:retry-1"
    assert logs.events("request")[0]["request_id"] == "frontend-7f3a.42:retry-1"


async def test_request_id_is_on_error_responses_too(gateway):
    response = await gateway.get("/no/such/route")
    assert response.status == 404
    assert len(response.headers["X-Request-ID"]) == 32


async def test_metrics_count_requests_under_the_route_template(gateway):
    for _ in range(3):
        await gateway.get("/healthz")
    await gateway.get("/secret/path/123")
    text = await (await gateway.get("/metrics")).text()
    assert 'gateway_http_requests_total{method="GET",route="/healthz",status="200"} 3.0' in text
    assert 'gateway_http_requests_total{method="GET",route="unmatched",status="404"} 1.0' in text
    assert "/secret/path/123" not in text
    assert (
        'gateway_http_request_duration_seconds_bucket{le="0.0005",method="GET",route="/healthz"}'
        in text
    )
    assert sample(text, "gateway_http_requests_in_flight") == 1.0  # the scrape itself
    assert 'gateway_build_info{commit="' in text
    assert "process_resident_memory_bytes" in text


async def test_openmetrics_exposition_carries_trace_exemplars(gateway, spans):
    await gateway.get("/healthz")
    (server,) = [s for s in spans.get_finished_spans() if s.kind is SpanKind.SERVER]
    response = await gateway.get(
        "/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"}
    )
    assert response.content_type == "application/openmetrics-text"
    text = await response.text()
    trace_id = format(server.context.trace_id, "032x")
    exemplar_lines = [l for l in text.splitlines() if f'trace_id="{trace_id}"' in l]
    assert exemplar_lines
    assert exemplar_lines[0].startswith("gateway_http_request_duration_seconds_bucket")


async def test_secrets_in_log_fields_are_redacted(logs):
    import structlog

    structlog.get_logger("t").info(
        "auth",
        token="eyJhbGciOiJFUzI1NiJ9.payload.sig",
        signature="0x" + "ab" * 65,
        password="pw",
        headers={"Cookie": "session=abc", "X-Operator-Token": "op-secret", "Accept": "*/*"},
        relayer_private_key="0x" + "11" * 32,
        batch=[{"access_token": "tok-123"}],
        **{"relay.relayer_key": "0x" + "22" * 32},
    )
    (line,) = logs.events("auth")
    for field in ("token", "signature", "password", "relayer_private_key", "relay.relayer_key"):
        assert line[field] == "[redacted]", field
    assert line["headers"] == {
        "Cookie": "[redacted]",
        "X-Operator-Token": "[redacted]",
        "Accept": "*/*",
    }
    assert line["batch"] == [{"access_token": "[redacted]"}]


async def test_every_response_hides_the_server_version_and_forbids_sniffing(gateway):
    for path in ["/healthz", "/nowhere", "/records/abc"]:
        response = await gateway.get(path)
        assert response.headers["Server"] == "gateway", path
        assert response.headers["X-Content-Type-Options"] == "nosniff", path


async def test_a_malformed_http_request_is_an_info_line_not_an_error(gateway, logs):
    reader, writer = await asyncio.open_connection(gateway.host, gateway.port)
    writer.write(b"GET /healthz?" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    await writer.drain()
    status_line = await reader.readline()
    writer.close()
    assert status_line.startswith((b"HTTP/1.1 400", b"HTTP/1.0 400"))
    lines = await eventually(
        lambda: [line for line in logs.lines() if line.get("logger") == "aiohttp.server"],
        what="aiohttp's line",
    )
    assert all(line["level"] == "info" for line in lines), lines
    assert "malformed HTTP request" in lines[0]["event"]
    assert "LineTooLong" in lines[0]["event"]
    assert "exception" not in lines[0]
