"""Shopify's toxiproxy as a pytest resource: the server built by scripts/build-toxiproxy.sh,
started on a free loopback port, and a small client of its documented HTTP API
(proxies, toxics, enable/disable, reset)."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from gateway.server import free_port

ROOT = Path(__file__).resolve().parents[2]


def toxiproxy_server() -> Path:
    """The pinned toxiproxy-server, built on first use (once per machine)."""
    built = subprocess.run(
        [str(ROOT / "scripts" / "build-toxiproxy.sh")],
        check=True,
        capture_output=True,
        text=True,
        timeout=600,
    )
    return Path(built.stdout.strip().splitlines()[-1])


class Toxiproxy:
    def __init__(self, api_port: int) -> None:
        self.api = f"http://127.0.0.1:{api_port}"

    def call(self, method: str, path: str, body: object = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.api + path, data=data, method=method, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            text = response.read()
        return json.loads(text) if text.strip() else None

    def proxy(self, name: str, upstream_port: int) -> int:
        """A proxy named ``name`` in front of 127.0.0.1:upstream_port; its listening port."""
        port = free_port()
        self.call(
            "POST",
            "/proxies",
            {
                "name": name,
                "listen": f"127.0.0.1:{port}",
                "upstream": f"127.0.0.1:{upstream_port}",
                "enabled": True,
            },
        )
        return port

    def enabled(self, name: str, enabled: bool) -> None:
        """Disabled: every connection is closed and new ones are refused (the server is down)."""
        self.call("POST", f"/proxies/{name}", {"enabled": enabled})

    def toxic(self, name: str, kind: str, stream: str = "downstream", **attributes: int) -> str:
        toxic = f"{kind}_{stream}"
        self.call(
            "POST",
            f"/proxies/{name}/toxics",
            {
                "name": toxic,
                "type": kind,
                "stream": stream,
                "toxicity": 1.0,
                "attributes": attributes,
            },
        )
        return toxic

    def partition(self, name: str) -> None:
        """Connections stay open and no byte passes either way (toxiproxy's ``timeout`` 0)."""
        self.toxic(name, "timeout", "upstream", timeout=0)
        self.toxic(name, "timeout", "downstream", timeout=0)

    def reset(self) -> None:
        """Every proxy enabled, every toxic removed."""
        self.call("POST", "/reset")


@contextmanager
def running_toxiproxy(log_path: Path) -> Iterator[Toxiproxy]:
    port = free_port()
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [str(toxiproxy_server()), "-host", "127.0.0.1", "-port", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    client = Toxiproxy(port)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                urllib.request.urlopen(f"{client.api}/version", timeout=2).close()
                break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError(f"toxiproxy did not start: {log_path.read_text()}") from None
                time.sleep(0.05)
        yield client
    finally:
        process.terminate()
        process.wait(10)
