"""Start the real `gateway` console script as a child process and wait for it."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

from gateway.server import free_port

__all__ = ["free_port", "gateway_dev", "gateway_process", "wait_http"]


def gateway_process(
    args: list[str], env: Mapping[str, str], log_path: Path
) -> subprocess.Popen[bytes]:
    full_env = {"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", "/tmp"), **env}
    with log_path.open("wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "gateway", *args],
            env=full_env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )


def wait_http(url: str, *, status: int = 200, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    last: object = None
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == status:
                    return
                last = response.status
        except urllib.error.HTTPError as exc:
            last = exc.code
            if exc.code == status:
                return
        except OSError as exc:
            last = exc
        time.sleep(0.1)
    raise TimeoutError(f"{url} did not answer {status} (last: {last})")


@contextlib.contextmanager
def gateway_dev(
    work: Path, port: int, env: Mapping[str, str], args: Sequence[str] = ()
) -> Iterator[str]:
    """`gateway dev [args]` (anvil and the gateway) run from ``work`` on ``port``, ready;
    its URL. Stopped with SIGINT, as Ctrl-C stops it."""
    with (work / "dev.log").open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "gateway", "dev", "--port", str(port), *args],
            cwd=work,
            env={**os.environ, **env},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_http(f"http://127.0.0.1:{port}/readyz", timeout_s=90)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
