"""A real headless Chromium (Debian's chromium + chromium-driver, driven by Selenium), the
gateway under `gateway dev`, a static server for the page on another origin, and a real
OTLP receiver. In CI a missing browser fails these tests; elsewhere it skips them."""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service

from gateway.chain.devchain import dev_accounts
from gateway.server import free_port
from tests.helpers.otlp import Receiver, otlp_receiver
from tests.helpers.processes import wait_http

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).parent
STATIC = ROOT / "gateway" / "webapp" / "static"
CHAIN_ID = 31337
SECOND_CHAIN_ID = 31338  # the dev gateway's second network


def _browser_paths() -> tuple[str, str]:
    browser, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if browser is None or driver is None:
        message = "chromium and chromium-driver are needed (scripts/system-deps.sh installs them)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return browser, driver


@dataclass
class DevGateway:
    url: str
    anvil_url: str
    page_origin: str  # allowed by CORS and SIWE
    other_origin: str  # not allowed
    otlp: Receiver
    log: Path

    def anvil(self, method: str, params: list[object]) -> object:
        body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params})
        request = urllib.request.Request(
            self.anvil_url, data=body.encode(), headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())["result"]

    def page_url(self, origin: str | None = None) -> str:
        return f"{origin or self.page_origin}/index.html?gateway={self.url}"


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *_args: object) -> None:
        pass


@functools.cache
def _snippets_bundle(out_dir: str) -> Path:
    out = Path(out_dir) / "snippets.js"
    subprocess.run(
        [
            "node",
            str(ROOT / "web" / "build.mjs"),
            "--entry",
            str(HERE / "snippets-entry.js"),
            "--out",
            str(out),
        ],
        check=True,
        capture_output=True,
    )
    return out


def _static_server(directory: Path) -> tuple[ThreadingHTTPServer, str]:
    handler = functools.partial(_Quiet, directory=str(directory))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


@pytest.fixture(scope="module", name="site")
def _site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """What the static servers serve: the page as shipped, and the snippet harness."""
    site = tmp_path_factory.mktemp("site")
    for file in STATIC.iterdir():
        shutil.copy(file, site / file.name)
    shutil.copy(HERE / "snippets.html", site / "snippets.html")
    shutil.copy(_snippets_bundle(str(tmp_path_factory.mktemp("snippets"))), site / "snippets.js")
    return site


@pytest.fixture(scope="module", name="dev_gateway")
def _dev_gateway(tmp_path_factory: pytest.TempPathFactory, site: Path) -> Iterator[DevGateway]:
    work = tmp_path_factory.mktemp("dev")
    allowed, allowed_origin = _static_server(site)
    refused, refused_origin = _static_server(site)
    port, anvil_port = free_port(), free_port()
    log = work / "gateway.log"
    with otlp_receiver() as otlp, log.open("wb") as out:
        env = {
            "PATH": os.environ.get("PATH", ""),
            "HOME": os.environ.get("HOME", "/tmp"),
            "GATEWAY_CORS_ORIGINS": allowed_origin,
            "GATEWAY_SIWE_DOMAINS": f"{allowed_origin.removeprefix('http://')},127.0.0.1:{port}",
            "GATEWAY_ANCHOR__INTERVAL_S": "1",
            "GATEWAY_LOG_FORMAT": "json",
            "OTEL_EXPORTER_OTLP_ENDPOINT": otlp.endpoint,
            "OTEL_SERVICE_NAME": "gateway",
            "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
            "OTEL_TRACES_SAMPLER_ARG": "0.1",
            "OTEL_BSP_SCHEDULE_DELAY": "100",
            "GATEWAY_SERVER__SHUTDOWN_TIMEOUT_S": "2",
        }
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gateway",
                "dev",
                "--port",
                str(port),
                "--anvil-port",
                str(anvil_port),
                # Two networks, as a dApp on two chains has: the page lets the wallet pick.
                "--chains",
                f"{CHAIN_ID},{SECOND_CHAIN_ID}",
            ],
            cwd=work,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        try:
            wait_http(f"http://127.0.0.1:{port}/readyz", timeout_s=90)
            yield DevGateway(
                url=f"http://127.0.0.1:{port}",
                anvil_url=f"http://127.0.0.1:{anvil_port}",
                page_origin=allowed_origin,
                other_origin=refused_origin,
                otlp=otlp,
                log=log,
            )
        finally:
            process.terminate()
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            for server in (allowed, refused):
                server.shutdown()
                server.server_close()


def wallet_script(anvil_url: str, *, chain_id: int = CHAIN_ID, account: int = 1) -> str:
    config = {"nodeUrl": anvil_url, "address": dev_accounts()[account].address, "chainId": chain_id}
    return (HERE / "wallet.js").read_text().replace("__CONFIG__", json.dumps(config))


@pytest.fixture(scope="module", name="open_browser")
def _open_browser(dev_gateway: DevGateway) -> Iterator[Callable[..., object]]:
    """A factory of headless Chromium sessions, each with the test wallet injected into every
    page it loads; all are closed at the end, before the gateway stops (their WebSockets
    would hold its shutdown)."""
    del dev_gateway
    browser, driver_path = _browser_paths()
    opened = []

    def open_one(wallet: str | None) -> webdriver.Chrome:
        options = webdriver.ChromeOptions()
        options.binary_location = browser
        for argument in (
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--window-size=1100,1250",
        ):
            options.add_argument(argument)
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        driver = webdriver.Chrome(options=options, service=Service(executable_path=driver_path))
        driver.set_script_timeout(30)
        opened.append(driver)
        if wallet is not None:
            driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": wallet})
        return driver

    yield open_one
    for driver in opened:
        driver.quit()
