"""Start the real `gateway` console script as a child process and wait for it."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path

from gateway.server import free_port

__all__ = ["free_port", "gateway_process", "wait_http"]


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
