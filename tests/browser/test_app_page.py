"""The reference dApp page in a real headless Chromium, loaded from another origin than the
gateway's, with a test wallet (an EIP-1193 provider on an anvil dev key) injected."""

from __future__ import annotations

import json
import os
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
from opentelemetry.proto.trace.v1.trace_pb2 import Span
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait

from tests.browser.conftest import CHAIN_ID, ROOT, SECOND_CHAIN_ID, DevGateway, wallet_script
from tests.helpers.waiting import wait_until

pytestmark = pytest.mark.integration

# `make screenshot` sets it to docs/app-page.png, the README's copy; else a temp file.
SCREENSHOT_ENV = "GATEWAY_SCREENSHOT"
NO_WALLET_SCREENSHOT_ENV = "GATEWAY_SCREENSHOT_NO_WALLET"  # docs/no-wallet.png


def wait(driver, timeout: float, poll_frequency: float = 0.5) -> WebDriverWait:
    """A wait that reads again an element the page re-rendered while it was being read."""
    return WebDriverWait(
        driver,
        timeout,
        poll_frequency=poll_frequency,
        ignored_exceptions=(StaleElementReferenceException,),
    )


def text(driver, element_id: str) -> str:
    return driver.find_element(By.ID, element_id).text


def wait_text(driver, element_id: str, predicate: Callable[[str], bool], timeout: float = 10):
    wait(driver, timeout, 0.05).until(
        lambda d: predicate(text(d, element_id)),
        message=f"#{element_id}: {text(driver, element_id)!r}",
    )
    return text(driver, element_id)


def load(driver, url: str) -> None:
    driver.get(url)
    wait(driver, 15).until(
        lambda d: d.execute_script("return document.body.dataset.ready") == "true"
    )


def click(driver, element_id: str) -> None:
    driver.find_element(By.ID, element_id).click()


SLOTS = ("session", "chain", "records", "gasless")  # each section's own error line


def shown_error(driver, slot: str = "session") -> str | None:
    box = driver.find_element(By.ID, f"{slot}-error")
    return None if not box.is_displayed() else text(driver, f"{slot}-error-code")


def shown_errors(driver) -> dict[str, str]:
    return {slot: code for slot in SLOTS if (code := shown_error(driver, slot)) is not None}


def sign_in(driver) -> str:
    click(driver, "sign-in")
    return wait_text(driver, "session-address", lambda t: t.startswith("0x"))


def test_the_whole_journey(open_browser, dev_gateway: DevGateway, tmp_path):
    driver = open_browser(wallet_script(dev_gateway.anvil_url))
    load(driver, dev_gateway.page_url())
    account = wallet_address(driver)

    # sign in -> session shown; reload keeps it
    assert sign_in(driver).lower() == account.lower()
    assert shown_errors(driver) == {}
    load(driver, dev_gateway.page_url())
    assert (
        wait_text(driver, "session-address", lambda t: t.startswith("0x")).lower()
        == account.lower()
    )

    # the chain through /rpc: block number and balance; a block mined appears within 2 s
    wait_text(driver, "balance", lambda t: t.endswith("ETH"))
    wait_text(driver, "heads-status", lambda t: t == "live")
    before = int(wait_text(driver, "block-number", str.isdigit))
    dev_gateway.anvil("anvil_mine", ["0x1"])
    wait_text(driver, "block-number", lambda t: t.isdigit() and int(t) > before, timeout=2)

    # a record signed, submitted, anchored, and its proof verified on chain through /rpc
    driver.find_element(By.ID, "note-text").clear()
    driver.find_element(By.ID, "note-text").send_keys("signed in a real browser")
    click(driver, "submit-record")
    record_id = wait_text(driver, "record-id", lambda t: t.startswith("0x"))
    row = f"tr[data-id='{record_id}']"
    wait(driver, 30, 0.2).until(
        lambda d: "verified on chain" in d.find_element(By.CSS_SELECTOR, row).text,
        message="the record's anchor and proof, verified on chain",
    )
    assert shown_errors(driver) == {}

    # gasless: the wallet signs an ERC-2771 request, the gateway's relayer pays and confirms
    click(driver, "gasless")
    wait_text(driver, "relay-status", lambda t: t == "confirmed", timeout=20)
    assert text(driver, "relay-tx").startswith("0x")
    assert shown_errors(driver) == {}
    screenshot = Path(os.environ.get(SCREENSHOT_ENV, tmp_path / "app-page.png"))
    assert driver.save_screenshot(str(ROOT / screenshot))

    # sign out -> session gone, also after a reload
    click(driver, "sign-out")
    wait_text(driver, "session-address", lambda t: t == "signed out")
    load(driver, dev_gateway.page_url())
    assert wait_text(driver, "session-address", lambda t: t == "signed out") == "signed out"


def wallet_address(driver) -> str:
    return driver.execute_async_script(
        "const done = arguments[0];"
        "window.addEventListener('eip6963:announceProvider', async (e) =>"
        " done((await e.detail.provider.request({method: 'eth_accounts'}))[0]), {once: true});"
        "window.dispatchEvent(new Event('eip6963:requestProvider'));"
    )


def test_a_rejected_signature_shows_its_error(open_browser, dev_gateway: DevGateway):
    driver = open_browser(wallet_script(dev_gateway.anvil_url))
    load(driver, dev_gateway.page_url())
    driver.execute_script("window.__testWallet.rejectNext = true")
    click(driver, "sign-in")
    wait(driver, 10).until(lambda d: shown_error(d) == "wallet.rejected")
    assert text(driver, "session-address") == "signed out"
    assert shown_errors(driver) == {"session": "wallet.rejected"}  # next to its button only


def test_a_wallet_on_another_chain_shows_wrong_chain(open_browser, dev_gateway: DevGateway):
    driver = open_browser(wallet_script(dev_gateway.anvil_url, chain_id=1))
    load(driver, dev_gateway.page_url())
    driver.execute_script("window.__testWallet.refuseSwitch = true")
    click(driver, "sign-in")
    wait(driver, 10).until(lambda d: shown_error(d) == "wallet.wrong_chain")
    assert text(driver, "session-address") == "signed out"
    calls = driver.execute_script("return window.__testWallet.calls")
    assert "personal_sign" not in calls  # nothing signed for the wrong chain


def test_a_page_from_an_origin_not_allowed_is_refused(open_browser, dev_gateway: DevGateway):
    driver = open_browser(wallet_script(dev_gateway.anvil_url))
    load(driver, dev_gateway.page_url(dev_gateway.other_origin))
    wait(driver, 10).until(lambda d: shown_error(d, "chain") == "page.gateway_unreachable")
    assert text(driver, "block-number") == "…"  # nothing was read


def test_the_click_is_the_parent_of_the_gateways_server_span(open_browser, dev_gateway):
    driver = open_browser(wallet_script(dev_gateway.anvil_url))
    load(driver, dev_gateway.page_url())
    sign_in(driver)  # one click: /auth/message, /auth/verify, /auth/session, ...
    assert text(driver, "trace-action") == "sign in"
    trace_id, click_span = text(driver, "trace-id"), text(driver, "trace-span")

    def server_spans() -> dict[str, Span]:
        return {
            span.name: span
            for _service, span in dev_gateway.otlp.spans
            if span.trace_id.hex() == trace_id and span.kind == Span.SPAN_KIND_SERVER
        }

    # (the chain id to sign in with is the chosen network's, from GET /networks at load)
    wanted = {"POST /auth/message", "POST /auth/verify", "GET /auth/session"}
    spans = wait_until(
        lambda: server_spans() if wanted <= server_spans().keys() else None,
        what=f"the sign-in's server spans {sorted(wanted)} at the receiver",
    )
    for span in spans.values():
        assert span.parent_span_id.hex() == click_span, span.name


def test_the_page_is_served_by_the_gateway_with_a_strict_policy(open_browser, dev_gateway):
    # Signing in is the cross-origin tests' job: the test wallet lives in the page and asks
    # anvil to sign, which this page's policy (connect-src 'self') rightly forbids; an
    # extension wallet signs outside the page.
    driver = open_browser(None)
    load(driver, f"{dev_gateway.url}/app/")
    wait_text(driver, "block-number", str.isdigit)
    wait_text(driver, "heads-status", lambda t: t == "live")  # WebSocket to 'self' allowed
    assert shown_errors(driver) == {}
    violations = [
        entry
        for entry in driver.get_log("browser")
        if "Content Security Policy" in entry["message"]
    ]
    assert violations == []


def test_without_a_wallet_the_page_says_what_is_needed(open_browser, dev_gateway, tmp_path):
    driver = open_browser(None)
    load(driver, dev_gateway.page_url())
    notice = driver.find_element(By.ID, "wallet-needed")
    assert notice.is_displayed()
    assert wait_text(driver, "needed-chain", str.isdigit) == "31337"
    assert "wallet" in notice.text.lower()
    # The notice is the first thing on the page, above the fold.
    assert notice.location["y"] < driver.find_element(By.ID, "sign-in").location["y"] < 1250
    for action in ("sign-in", "submit-record", "gasless"):
        assert not driver.find_element(By.ID, action).is_enabled(), action
    assert driver.find_element(By.ID, "refresh").is_enabled()  # reading needs no wallet
    wait_text(driver, "block-number", str.isdigit)
    assert shown_errors(driver) == {}
    icon = driver.execute_script("return document.querySelector('link[rel=icon]').href")
    assert icon.endswith("/favicon.svg")
    missing = [e for e in driver.get_log("browser") if "404" in e["message"]]
    assert missing == []  # no /favicon.ico, nothing else missing
    screenshot = Path(os.environ.get(NO_WALLET_SCREENSHOT_ENV, tmp_path / "no-wallet.png"))
    assert driver.save_screenshot(str(ROOT / screenshot))


def test_the_wallet_picks_the_second_network(open_browser, dev_gateway: DevGateway):
    """The dev gateway serves two chains: the page lists both with their block numbers;
    on the second one the wallet signs in with its chain id, and a record signed there is
    anchored on that chain and its proof verified there."""
    driver = open_browser(wallet_script(dev_gateway.anvil_url, account=4))
    load(driver, dev_gateway.page_url())
    for chain_id in (CHAIN_ID, SECOND_CHAIN_ID):
        row = f"#networks tr[data-chain-id='{chain_id}']"
        wait(driver, 10, 0.1).until(
            lambda d, row=row: d.find_element(By.CSS_SELECTOR, row).text.split()[-1].isdigit(),
            message=f"the block number of network {chain_id}",
        )
    Select(driver.find_element(By.ID, "network")).select_by_value(str(SECOND_CHAIN_ID))
    wait_text(driver, "network-chain", lambda t: t == str(SECOND_CHAIN_ID))

    sign_in(driver)
    assert driver.execute_script("return window.__testWallet.chainId") == SECOND_CHAIN_ID
    token = driver.execute_script("return sessionStorage.getItem('gateway.session')")
    request = urllib.request.Request(
        f"{dev_gateway.url}/auth/session", headers={"Authorization": f"Bearer {token}"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert json.loads(response.read())["chainId"] == SECOND_CHAIN_ID

    click(driver, "submit-record")
    record_id = wait_text(driver, "record-id", lambda t: t.startswith("0x"))
    wait(driver, 30, 0.2).until(
        lambda d: (
            "verified on chain"
            in d.find_element(By.CSS_SELECTOR, f"tr[data-id='{record_id}']").text
        ),
        message="the record anchored and verified on the second chain",
    )
    with urllib.request.urlopen(f"{dev_gateway.url}/records/{record_id}/proof", timeout=10) as r:
        assert json.loads(r.read())["chainId"] == SECOND_CHAIN_ID
    assert shown_errors(driver) == {}
