"""Sign-in on a gateway of two networks: the message's chain id picks the nodes that check
a contract wallet, and the session carries that chain id."""

import json

import pytest
from eth_account import Account
from eth_utils import to_checksum_address

from gateway.app import create_app
from gateway.chain import DevChain
from tests.helpers.chain import deploy
from tests.identity.conftest import DOMAIN, SignInFlow, make_message, personal_sign

pytestmark = pytest.mark.integration

SECOND = 31338


@pytest.fixture(name="database_env")
def _sqlite_only(tmp_path):
    """Storage is not what this suite is about: the embedded default only."""
    return {"GATEWAY_DATABASE_URL": f"sqlite:///{tmp_path / 'gateway.db'}"}


@pytest.fixture(name="chain_a")
def _chain_a(tmp_path):
    """The first chain, of this test alone: nothing deployed on it."""
    with DevChain.start(log_dir=tmp_path / "anvil-a") as chain:
        yield chain


@pytest.fixture(name="two_chain_flow")
async def _two_chain_flow(aiohttp_client, chain_a, chain_b, make_settings):
    networks = [
        {"chain_id": chain_a.chain_id, "upstreams": [{"url": chain_a.url}]},
        {"chain_id": SECOND, "alias": "second", "upstreams": [{"url": chain_b.url}]},
    ]
    settings = make_settings(
        GATEWAY_NETWORKS=json.dumps(networks),
        GATEWAY_SIWE_DOMAINS=DOMAIN,
        GATEWAY_IDENTITY__COOKIE_SECURE="false",
    )
    return SignInFlow(await aiohttp_client(create_app(settings)))


async def _session(flow: SignInFlow, token: str) -> dict:
    response = await flow.client.get("/auth/session", headers={"Authorization": f"Bearer {token}"})
    assert response.status == 200, await response.text()
    return await response.json()


async def test_an_eoa_signs_in_on_the_second_chain(two_chain_flow):
    flow, account = two_chain_flow, Account.create()
    token = (await flow.sign_in(account, chain_id=SECOND))["token"]
    session = await _session(flow, token)
    assert session["chainId"] == SECOND
    assert session["walletType"] == "eoa"


async def test_a_contract_wallet_of_the_second_chain_signs_in_with_its_chain_id_only(
    two_chain_flow, chain_a, chain_b
):
    flow, owner = two_chain_flow, Account.create()
    wallet = to_checksum_address(deploy(chain_b, "TestSmartWallet", ["address"], [owner.address]))
    assert chain_a.rpc("eth_getCode", [wallet, "latest"]) == "0x"  # on the second chain only

    on_first = make_message(wallet, await flow.nonce(), chain_id=chain_a.chain_id)
    refused = await flow.verify(on_first, personal_sign(owner, on_first))
    assert refused.status == 401
    assert (await refused.json())["error"]["code"] == "siwe.signature.invalid"

    on_second = make_message(wallet, await flow.nonce(), chain_id=SECOND)
    response = await flow.verify(on_second, personal_sign(owner, on_second))
    assert response.status == 200, await response.text()
    session = await _session(flow, (await response.json())["token"])
    assert session == session | {"address": wallet, "walletType": "contract", "chainId": SECOND}


async def test_a_chain_outside_the_networks_is_refused(two_chain_flow):
    flow = two_chain_flow
    account = Account.create()
    text = make_message(account.address, await flow.nonce(), chain_id=5)
    response = await flow.verify(text, personal_sign(account, text))
    assert response.status == 401
    assert (await response.json())["error"]["code"] == "siwe.chain.not_allowed"
