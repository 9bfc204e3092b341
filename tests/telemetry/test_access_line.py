"""The access line's fast rendering (fields kept, rendered when the batch is written) writes
what structlog's JSON renderer writes: the process's bound fields, the answer's facts, the
line's own fields, event, level and timestamp."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import structlog

from gateway.rpc.explain import Explain
from gateway.telemetry import logging as gateway_logging
from gateway.telemetry.logging import bind_process_fields, write_access_line


@pytest.fixture(name="process_fields")
def _process_fields() -> Iterator[None]:
    active = gateway_logging._Active  # the module's own state, restored
    saved = active.process_fields, active.access_prefix
    yield
    active.process_fields, active.access_prefix = saved
    structlog.contextvars.clear_contextvars()


def _line(facts: Explain | None) -> None:
    write_access_line(
        "POST", "/rpc", "/rpc", 200, 0.0012345, 57, "10.0.0.7", "req-1", 0xABC, 0xDEF, facts
    )


@pytest.mark.parametrize("with_facts", [True, False])
def test_the_fast_line_is_the_line_structlog_writes(logs, process_fields, monkeypatch, with_facts):
    bind_process_fields(worker=3)
    facts = Explain(cache="hit", block=12) if with_facts else None
    _line(facts)
    monkeypatch.setattr(gateway_logging._Active, "fast_access_json", False)
    _line(facts)
    fast, slow = logs.events("request")
    assert fast.pop("timestamp").endswith("Z")
    assert slow.pop("timestamp").endswith("Z")
    slow.pop("logger", None)  # structlog's path names its logger; the fast line never did
    assert fast == slow
    expected = {
        "worker": 3,
        "method": "POST",
        "route": "/rpc",
        "path": "/rpc",
        "status": 200,
        "duration_ms": 1.234,
        "bytes": 57,
        "client_ip": "10.0.0.7",
        "request_id": "req-1",
        "trace_id": f"{0xABC:032x}",
        "span_id": f"{0xDEF:016x}",
        "event": "request",
        "level": "info",
    }
    if with_facts:
        expected |= {"cache": "hit", "block": "12"}
    assert fast == expected


def test_without_process_fields_the_line_starts_with_its_own(logs, process_fields):
    _line(None)
    (line,) = logs.events("request")
    assert next(iter(line)) == "method"
    assert "worker" not in line
