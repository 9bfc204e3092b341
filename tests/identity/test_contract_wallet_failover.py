"""A contract wallet's sign-in (EIP-1271, EIP-6492) is checked through the second node
when the first is unreachable, and answers 503 upstream.unavailable when no node is left:
never a 500, and the nonce survives for a retry."""

from __future__ import annotations

import pytest
from eth_account import Account
from eth_utils import to_checksum_address

from gateway.app import create_app
from tests.helpers.chain import deploy
from tests.helpers.lane import LaneTestServer
from tests.helpers.tcpproxy import proxy_to
from tests.identity.conftest import SignInFlow, make_message, personal_sign
from tests.identity.test_contract_wallets import Counterfactual

pytestmark = pytest.mark.integration


@pytest.fixture(name="proxy")
async def _proxy(anvil):
    async with proxy_to(anvil.port) as proxy:
        yield proxy


async def _flow(aiohttp_client, make_settings, auth_env, upstreams: list[str]) -> SignInFlow:
    settings = make_settings(upstreams=upstreams, **auth_env, GATEWAY_RPC__HEALTH_INTERVAL_S="0.2")
    return SignInFlow(await aiohttp_client(LaneTestServer(create_app(settings))))


@pytest.mark.parametrize("fault", ["reset", "stopped"])
async def test_contract_wallets_sign_in_through_the_other_node(
    aiohttp_client, make_settings, auth_env, anvil, proxy, fault
):
    flow = await _flow(aiohttp_client, make_settings, auth_env, [proxy.url, anvil.url])
    if fault == "reset":
        proxy.reset_all()
    else:
        await proxy.stop()
    owner = Account.create()

    deployed = to_checksum_address(deploy(anvil, "TestSmartWallet", ["address"], [owner.address]))
    counterfactual = Counterfactual(anvil, Account.create())
    for _ in range(3):  # the pool's order is random: each node may be asked first
        text = make_message(deployed, await flow.nonce())
        response = await flow.verify(text, personal_sign(owner, text))
        assert response.status == 200, await response.text()
        text = make_message(counterfactual.address, await flow.nonce())
        signature = counterfactual.wrap(personal_sign(counterfactual.owner, text))
        response = await flow.verify(text, signature)
        assert response.status == 200, await response.text()


async def test_no_node_left_is_503_and_the_nonce_survives(
    aiohttp_client, make_settings, auth_env, anvil, proxy
):
    flow = await _flow(aiohttp_client, make_settings, auth_env, [proxy.url])
    owner = Account.create()

    wallet = to_checksum_address(deploy(anvil, "TestSmartWallet", ["address"], [owner.address]))
    text = make_message(wallet, await flow.nonce())
    await proxy.stop()
    response = await flow.verify(text, personal_sign(owner, text))
    assert response.status == 503, await response.text()
    assert (await response.json())["error"]["code"] == "upstream.unavailable"
    await proxy.start()  # the node is back on the same port: the same message signs in
    response = await flow.verify(text, personal_sign(owner, text))
    assert response.status == 200, await response.text()
    assert 'status="500"' not in await (await flow.client.get("/metrics")).text()
