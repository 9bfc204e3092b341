"""`make observe` next to `gateway dev`: Jaeger v2 (built from its Go module) and Prometheus
with the project's rules. A click on the reference page is found through Jaeger's query API
as one trace: the gateway's server span, child of the click's span (its id as the page shows
it), and the call to the node under it; Prometheus scrapes the gateway and its rules load."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator

import pytest

from tests.browser.conftest import ROOT, DevGateway
from tests.browser.test_app_page import click, load, text, wait_text
from tests.helpers.processes import free_port, gateway_dev
from tests.helpers.waiting import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


@pytest.fixture(scope="module", name="observe")
def _observe(tmp_path_factory) -> Iterator[dict[str, int | dict[str, str]]]:
    state = tmp_path_factory.mktemp("observe")
    ports = {
        "OBSERVE_OTLP_PORT": free_port(),
        "OBSERVE_JAEGER_PORT": free_port(),
        "OBSERVE_PROMETHEUS_PORT": free_port(),
        "OBSERVE_HEALTH_PORT": free_port(),
        "GATEWAY_PORT": free_port(),
    }
    env = {**os.environ, **{k: str(v) for k, v in ports.items()}, "OBSERVE_DIR": str(state)}
    with (state / "observe.out").open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, str(ROOT / "scripts" / "observe.py")],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_until(
            lambda: (state / "otlp.env").exists() or process.poll() is not None,
            timeout_s=540,  # a fresh machine builds Jaeger first
            what="make observe to start",
        )
        assert process.poll() is None, (state / "observe.out").read_text()
        exported = dict(
            line.split("=", 1) for line in (state / "otlp.env").read_text().splitlines()
        )
        yield {**ports, "env": exported}
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(20)
    assert not (state / "otlp.env").exists()  # `make dev` stops exporting to it


@pytest.fixture(scope="module", name="dev_gateway")
def _dev_gateway(observe, tmp_path_factory) -> Iterator[DevGateway]:
    """`gateway dev` with the environment `make dev` takes from `make observe`."""
    work = tmp_path_factory.mktemp("observed-dev")
    env = {**observe["env"], "OTEL_BSP_SCHEDULE_DELAY": "100"}
    with gateway_dev(work, observe["GATEWAY_PORT"], env) as url:
        yield DevGateway(
            url=url,
            anvil_url="",
            page_origin=url,
            other_origin="",
            otlp=None,  # type: ignore[arg-type]  # traces go to Jaeger here
            log=work / "dev.log",
        )


def test_a_click_is_one_trace_in_jaeger(open_browser, dev_gateway: DevGateway, observe):
    driver = open_browser(None)
    load(driver, f"{dev_gateway.url}/app/")
    before = int(wait_text(driver, "block-number", str.isdigit))
    wait_text(driver, "block-number", lambda t: t.isdigit() and int(t) > before, timeout=10)
    click(driver, "refresh")  # eth_blockNumber at a new head: asked of the node
    wait_text(driver, "trace-action", lambda t: t == "refresh")
    trace_id, click_span = text(driver, "trace-id"), text(driver, "trace-span")
    jaeger = f"http://127.0.0.1:{observe['OBSERVE_JAEGER_PORT']}"

    def spans() -> list[dict] | None:
        try:
            found = _get(f"{jaeger}/api/traces/{trace_id}")["data"]
        except OSError:
            return None
        every = [span for each in found for span in each["spans"]]
        kinds = {
            tag["value"] for span in every for tag in span["tags"] if tag["key"] == "span.kind"
        }
        return every if {"server", "client"} <= kinds else None

    found = wait_until(spans, timeout_s=30, what=f"trace {trace_id} in Jaeger")
    by_id = {span["spanID"]: span for span in found}
    # The page reads on the network it chose: /rpc/<chain id> (GET /networks)
    server = next(s for s in found if s["operationName"] == "POST /rpc/{network}")
    assert [r["spanID"] for r in server["references"]] == [click_span]  # the click's child
    client = next(
        s
        for s in found
        if any(t == {"key": "span.kind", "type": "string", "value": "client"} for t in s["tags"])
    )
    ancestors, span = [], client
    while span["references"] and span["references"][0]["spanID"] in by_id:
        span = by_id[span["references"][0]["spanID"]]
        ancestors.append(span["spanID"])
    assert server["spanID"] in ancestors  # the node call is under the server span

    prometheus = f"http://127.0.0.1:{observe['OBSERVE_PROMETHEUS_PORT']}"

    def scraped() -> bool:
        result = _get(f"{prometheus}/api/v1/query?query=up")["data"]["result"]
        return any(r["metric"].get("job") == "gateway" and r["value"][1] == "1" for r in result)

    wait_until(scraped, timeout_s=30, what="Prometheus to scrape the gateway")
    groups = _get(f"{prometheus}/api/v1/rules")["data"]["groups"]
    rules = [rule for group in groups for rule in group["rules"]]
    assert rules
    assert [r["name"] for r in rules if r.get("health") == "err"] == []
