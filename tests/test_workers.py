"""`gateway serve --workers 2`: one port, two processes, per-process metrics, restarts."""

import os
import re
import signal
import socket
import subprocess
import urllib.request
from pathlib import Path

import pytest

from tests.helpers.processes import free_port, gateway_process, wait_http
from tests.helpers.waiting import wait_until

pytestmark = pytest.mark.integration


def _two_free_ports() -> int:
    for _ in range(50):
        base = free_port()
        with socket.socket() as first, socket.socket() as second:
            try:
                first.bind(("127.0.0.1", base))
                second.bind(("127.0.0.1", base + 1))
            except OSError:
                continue
            return base
    raise RuntimeError("no two consecutive free ports")


def _healthz_count(port: int) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    found = re.search(
        r'gateway_http_requests_total\{method="GET",route="/healthz",status="200"\} ([0-9.]+)', text
    )
    return float(found.group(1)) if found else 0.0


def _workers(pid: int) -> list[int]:
    """The worker processes of the supervisor ``pid`` (not multiprocessing's helpers)."""
    result = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True, check=False)
    found = []
    for child in map(int, result.stdout.split()):
        try:
            cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
        except FileNotFoundError:  # exited since pgrep listed it (a short-lived helper)
            continue
        if b"spawn_main" in cmdline and b"resource_tracker" not in cmdline:
            found.append(child)
    return found


def test_two_workers_share_the_port_and_report_their_own_metrics(anvil, tmp_path):
    port, metrics = free_port(), _two_free_ports()
    process = gateway_process(
        ["serve", "--port", str(port), "--workers", "2"],
        {
            "GATEWAY_UPSTREAMS": anvil.url,
            "GATEWAY_DATABASE_URL": f"sqlite:///{tmp_path / 'gw.db'}",
            "GATEWAY_IDENTITY__KEYS_DIR": str(tmp_path / "keys"),
            "GATEWAY_LOG_FORMAT": "json",
            "GATEWAY_SERVER__METRICS_PORT": str(metrics),
        },
        tmp_path / "workers.log",
    )
    try:
        for each in (port, metrics, metrics + 1):
            wait_http(f"http://127.0.0.1:{each}/healthz", timeout_s=60)
        before = _healthz_count(metrics) + _healthz_count(metrics + 1)
        for _ in range(40):
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5):
                pass
        after = _healthz_count(metrics) + _healthz_count(metrics + 1)
        assert after - before == 40  # every request counted once, by the process that served it

        workers = _workers(process.pid)
        assert len(workers) == 2
        os.kill(workers[0], signal.SIGKILL)  # a worker dies ...
        wait_until(
            lambda: len(now := _workers(process.pid)) == 2 and workers[0] not in now,
            timeout_s=30,
            what="a new worker in place of the dead one",
        )
        for each in (port, metrics, metrics + 1):  # ... and is back
            wait_http(f"http://127.0.0.1:{each}/healthz", timeout_s=60)

        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0
    finally:
        process.kill()
        process.wait(10)
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0  # nobody listens any more
