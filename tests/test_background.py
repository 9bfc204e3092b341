"""A background loop's failed rounds: a dependency that is down is said once when rounds
start failing and once when they recover (each round counted); a bug every time."""

from __future__ import annotations

import structlog
from structlog.testing import capture_logs

from gateway.background import Rounds
from gateway.errors import StorageUnavailable, UpstreamError


def test_an_unavailable_dependency_is_one_warning_then_one_recovery_line():
    counted: list[str] = []
    rounds = Rounds("relay", structlog.get_logger("t"), counted.append)
    with capture_logs() as lines:
        for _ in range(5):
            rounds.failed(StorageUnavailable(detail="connection refused"))
        rounds.failed(UpstreamError(detail="node down"))
        rounds.succeeded()
        rounds.succeeded()
        rounds.failed(RuntimeError("a bug"))
        rounds.failed(RuntimeError("a bug"))
    assert [(line["event"], line["log_level"]) for line in lines] == [
        ("background rounds failing", "warning"),
        ("background rounds recovered", "info"),
        ("background round failed", "error"),
        ("background round failed", "error"),
    ]
    assert lines[0]["loop"] == "relay"
    assert lines[0]["code"] == "storage.unavailable"
    assert "exc_info" not in lines[0]
    assert isinstance(lines[2]["exc_info"], RuntimeError)
    assert counted == ["unavailable"] * 6 + ["error"] * 2
