"""Shared bench helpers: run servers in child processes and measure them with wrk."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from gateway.server import free_port

__all__ = [
    "Result",
    "ensure_wrk",
    "free_port",
    "gateway_cmd",
    "gateway_env",
    "print_table",
    "run_wrk",
    "serving",
    "serving_gateway",
    "start",
    "wait_ready",
]

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


@dataclass(frozen=True)
class Result:
    name: str
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    errors: int


def ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() == 0:
        subprocess.run(["apt-get", "update", "-qq"], check=True)
        subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=True)
        return shutil.which("wrk") or sys.exit("wrk did not install")
    sys.exit("wrk is needed: apt-get install wrk")


def wait_ready(url: str, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(url)


def start(
    cmd: list[str], env: dict[str, str], cpu: int | None, log: Path
) -> subprocess.Popen[bytes]:
    """Start a server, pinned to one core when asked, so the load generator gets the other."""
    if cpu is not None and shutil.which("taskset"):
        cmd = ["taskset", "-c", str(cpu), *cmd]
    with log.open("wb") as out:
        return subprocess.Popen(
            cmd, env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT
        )


@contextlib.contextmanager
def serving(
    cmd: list[str], env: dict[str, str], *, cpu: int | None, log: Path, ready_url: str
) -> Iterator[subprocess.Popen[bytes]]:
    """A server started (see ``start``), ready at ``ready_url``, and stopped on exit."""
    process = start(cmd, env, cpu, log)
    try:
        wait_ready(ready_url, timeout_s=60)
        yield process
    finally:
        process.terminate()
        process.wait(30)


def gateway_cmd(port: int, *options: str) -> list[str]:
    return [sys.executable, "-m", "gateway", "serve", "--port", str(port), *options]


def serving_gateway(
    port: int, env: dict[str, str], *, cpu: int | None, log: Path, options: tuple[str, ...] = ()
) -> contextlib.AbstractContextManager[subprocess.Popen[bytes]]:
    """``gateway serve`` on ``port``, ready when /readyz says so."""
    ready_url = f"http://127.0.0.1:{port}/readyz"
    return serving(gateway_cmd(port, *options), env, cpu=cpu, log=log, ready_url=ready_url)


def gateway_env(
    work: Path, upstreams: str, database: str = "gw.db", **settings: str
) -> dict[str, str]:
    """A benched gateway's environment: JSON access log, SQLite in ``work``, and the trace
    sampling the README recommends for production; ``settings`` add or override."""
    return {
        "GATEWAY_UPSTREAMS": upstreams,
        "GATEWAY_CHAIN_ID": "31337",
        "GATEWAY_LOG_FORMAT": "json",
        "GATEWAY_DATABASE_URL": f"sqlite:///{work / database}",
        "GATEWAY_IDENTITY__KEYS_DIR": str(work / "keys"),
        "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
        "OTEL_TRACES_SAMPLER_ARG": "0.1",
        **settings,
    }


def _ms(value: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", value).groups()
    return float(number) * _UNITS[unit]


def run_wrk(
    name: str,
    url: str,
    *,
    seconds: int,
    connections: int,
    cpu: int | None,
    script: Path | None = None,
) -> Result:
    cmd = [ensure_wrk(), "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", url]
    if script is not None:
        cmd[1:1] = ["-s", str(script)]
    if cpu is not None and shutil.which("taskset"):
        cmd = ["taskset", "-c", str(cpu), *cmd]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p50 = _ms(re.search(r"\s50%\s+(\S+)", out).group(1))
    p99 = _ms(re.search(r"\s99%\s+(\S+)", out).group(1))
    errors = 0
    if match := re.search(r"Non-2xx or 3xx responses: (\d+)", out):
        errors += int(match.group(1))
    if match := re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out
    ):
        errors += sum(int(g) for g in match.groups())
    return Result(name, rps, p50, p99, errors)


def print_table(results: list[Result], baseline: Result) -> None:
    print(f"{'server':<48} {'req/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7} {'vs base':>8}")
    for r in results:
        ratio = r.requests_per_s / baseline.requests_per_s
        print(
            f"{r.name:<48} {r.requests_per_s:>10.0f} {r.p50_ms:>8.3f} {r.p99_ms:>8.3f} "
            f"{r.errors:>7} {ratio:>7.2f}x"
        )
