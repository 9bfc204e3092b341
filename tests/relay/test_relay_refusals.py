"""Every refusal before gas is spent: its status and code, and nothing sent or stored (the
relayer's nonce and balance unchanged, the signer's list empty)."""

from __future__ import annotations

import io
import time

import pytest
from eth_account import Account

from tests.relay.conftest import RELAYER, Frontend, guestbook_call, signed_body

pytestmark = pytest.mark.integration


def relayer_state(chain) -> tuple[object, object]:
    address = chain.accounts[RELAYER].address
    return (
        chain.rpc("eth_getTransactionCount", [address, "pending"]),
        chain.rpc("eth_getBalance", [address, "latest"]),
    )


async def stored_for(client, address: str) -> list:
    response = await client.get(f"/relay?from={address}")
    return (await response.json())["items"]


REFUSALS = {
    # name: (how the request differs, status, code)
    "another key signed it": ({"signed_by": Account.create()}, 401, "relay.bad_signature"),
    "deadline passed": ({"deadline": lambda: int(time.time()) - 10}, 422, "relay.expired"),
    "deadline too soon": (
        {"deadline": lambda: int(time.time()) + 5},
        422,
        "relay.deadline_too_soon",
    ),
    "nonce skips ahead": ({"nonce": 1}, 409, "relay.bad_nonce"),
    "target not allowed": (
        {"to": "0x" + "42" * 20},
        403,
        "relay.target_not_allowed",
    ),
    "function not allowed": (
        {"data": "0x8da5cb5b"},  # owner(): not on the allow-list
        403,
        "relay.function_not_allowed",
    ),
    "value not allowed": ({"value": 1}, 422, "relay.value_not_allowed"),
    "gas over the cap": ({"gas": 5_000_000}, 422, "relay.gas_too_high"),
    "reverts in simulation": ({"data": guestbook_call("")}, 422, "relay.simulation_reverted"),
}


@pytest.mark.parametrize("case", sorted(REFUSALS))
async def test_refused_before_any_gas(relay_client, chain, case):
    frontend = Frontend(relay_client)
    signer = Account.create()
    changes, status, code = REFUSALS[case]
    changes = {key: value() if callable(value) else value for key, value in changes.items()}
    before = relayer_state(chain)
    got, body = await frontend.submit(await frontend.build(signer, "hi", **changes))
    assert got == status, body
    assert body["error"]["code"] == code
    if code == "relay.simulation_reverted":
        assert body["error"]["data"]["reason"] == "EmptyNote()"
    if code == "relay.bad_nonce":
        assert body["error"]["data"]["expected"] == "0"
    assert relayer_state(chain) == before
    assert await stored_for(relay_client, signer.address) == []


async def test_a_wrong_domain_is_told_apart_from_a_wrong_key(relay_client, chain):
    frontend = Frontend(relay_client)
    signer = Account.create()
    info = await frontend.info(signer.address)
    before = relayer_state(chain)
    wrong = {**info["domain"], "chainId": 1}  # the wallet on mainnet, say
    body = signed_body({**info, "domain": wrong}, signer, "hi")
    status, refused = await frontend.submit({**body, "domain": wrong})
    assert (status, refused["error"]["code"]) == (422, "relay.wrong_domain")
    expected = refused["error"]["data"]["expected"]
    assert expected["chainId"] == chain.chain_id
    assert expected["verifyingContract"] == info["domain"]["verifyingContract"]
    assert "chainId" in refused["error"]["message"]
    # Without the domain it signed, the same request is a bad signature (naming the domain).
    status, refused = await frontend.submit(body)
    assert (status, refused["error"]["code"]) == (401, "relay.bad_signature")
    assert refused["error"]["data"]["domain"] == info["domain"]
    # The right domain and another key: a bad signature, whether the domain is sent or not.
    stranger = signed_body(info, signer, "hi", signed_by=Account.create())
    for sent in (stranger, {**stranger, "domain": info["domain"]}):
        status, refused = await frontend.submit(sent)
        assert (status, refused["error"]["code"]) == (401, "relay.bad_signature")
    assert relayer_state(chain) == before  # nothing was sent for any of them
    # And the right domain sent along is accepted.
    status, accepted = await frontend.submit(
        {**signed_body(info, signer, "hi"), "domain": info["domain"]}
    )
    assert status == 202, accepted


async def test_the_hourly_quota(make_relay_client, chain):
    client = await make_relay_client(GATEWAY_RELAY__REQUESTS_PER_HOUR="1")
    frontend = Frontend(client)
    signer = Account.create()
    first, _ = await frontend.submit(await frontend.build(signer, "one"))
    assert first == 202
    status, body = await frontend.submit(await frontend.build(signer, "two", nonce=1))
    assert status == 429
    assert body["error"]["code"] == "relay.quota_exceeded"
    assert len(await stored_for(client, signer.address)) == 1  # the refused one is not stored


async def test_a_session_can_be_required(make_relay_client, chain):
    client = await make_relay_client(GATEWAY_RELAY__REQUIRE_SESSION="true")
    frontend = Frontend(client)
    signer = Account.create()
    before = relayer_state(chain)
    status, body = await frontend.submit(await frontend.build(signer))
    assert (status, body["error"]["code"]) == (401, "relay.session_required")
    assert relayer_state(chain) == before


async def test_the_same_signed_request_twice_is_one_request(relay_client, chain):
    frontend = Frontend(relay_client)
    signer = Account.create()
    request = await frontend.build(signer, "once")
    first, body = await frontend.submit(request)
    again, replay = await frontend.submit(request)
    assert (first, again) == (202, 200)
    assert replay["id"] == body["id"]
    assert len(await stored_for(relay_client, signer.address)) == 1


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        (b"{not json", 400, "request.malformed_json"),
        (b'{"request": {}, "signature": "0x"}', 422, "request.invalid_params"),
        (b'{"request": 1, "signature": "0x00"}', 422, "request.invalid_params"),
        (b"[]", 422, "request.invalid_params"),
    ],
)
async def test_malformed_bodies(relay_client, chain, body, status, code):
    before = relayer_state(chain)
    response = await relay_client.post(
        "/relay", data=body, headers={"Content-Type": "application/json"}
    )
    assert response.status == status
    assert (await response.json())["error"]["code"] == code
    assert relayer_state(chain) == before


async def test_hostile_fields(relay_client, chain):
    frontend = Frontend(relay_client)
    signer = Account.create()
    good = await frontend.build(signer)
    before = relayer_state(chain)
    for field, value in (
        ("gas", 2**256),
        ("deadline", 2**48),
        ("value", -1),
        ("to", "0x1234"),
        ("data", "0x0"),
        ("nonce", "1e3"),
        ("from", None),
    ):
        hostile = {**good, "request": {**good["request"], field: value}}
        status, body = await frontend.submit(hostile)
        assert status == 422, (field, body)
        assert body["error"]["code"] == "request.invalid_params"
    status, body = await frontend.submit({**good, "signature": "0x" + "ab" * 9000})
    assert status == 422
    response = await relay_client.post(
        "/relay",
        data=io.BytesIO(b"{" + b" " * (2 * 1024 * 1024) + b"}"),
        headers={"Content-Type": "application/json"},
    )
    assert response.status == 413
    assert relayer_state(chain) == before


async def test_unknown_and_bad_ids(relay_client):
    missing = await relay_client.get("/relay/0x" + "00" * 32)
    assert (missing.status, (await missing.json())["error"]["code"]) == (404, "relay.not_found")
    bad = await relay_client.get("/relay/0x1234")
    assert (bad.status, (await bad.json())["error"]["code"]) == (422, "relay.bad_id")
    listing = await relay_client.get("/relay?status=nope")
    assert listing.status == 422
    page = await relay_client.get("/relay?limit=0")
    assert page.status == 422
    cancel = await relay_client.delete("/relay/0x" + "00" * 32)
    assert cancel.status == 404


async def test_relay_off_says_so(aiohttp_client, make_settings, chain):
    from gateway.app import create_app

    client = await aiohttp_client(create_app(make_settings(GATEWAY_UPSTREAMS=chain.url)))
    response = await client.get("/relay/forwarder")
    assert response.status == 503
    assert (await response.json())["error"]["code"] == "relay.unavailable"
