"""Contract wallets sign in: EIP-1271 (deployed) and EIP-6492 (counterfactual), on anvil."""

import os

import pytest
from eth_abi import encode
from eth_account import Account
from eth_utils import function_signature_to_4byte_selector, to_checksum_address

from gateway.chain.wallets import ERC6492_SUFFIX
from tests.helpers.chain import call, deploy
from tests.identity.conftest import make_message, personal_sign

pytestmark = pytest.mark.integration


def selector(signature: str) -> bytes:
    return function_signature_to_4byte_selector(signature)


async def test_eip1271_wallet_signs_in(anvil, flow, client):
    owner = Account.create()
    wallet = to_checksum_address(deploy(anvil, "TestSmartWallet", ["address"], [owner.address]))
    text = make_message(wallet, await flow.nonce())
    response = await flow.verify(text, personal_sign(owner, text))
    assert response.status == 200, await response.text()
    token = (await response.json())["token"]
    session = await (
        await client.get("/auth/session", headers={"Authorization": f"Bearer {token}"})
    ).json()
    assert session == session | {"address": wallet, "walletType": "contract"}


async def test_eip1271_wallet_rejects_a_stranger(anvil, flow):
    owner, stranger = Account.create(), Account.create()
    wallet = to_checksum_address(deploy(anvil, "TestSmartWallet", ["address"], [owner.address]))
    nonce = await flow.nonce()
    text = make_message(wallet, nonce)
    response = await flow.verify(text, personal_sign(stranger, text))
    assert response.status == 401
    assert (await response.json())["error"]["code"] == "siwe.signature.invalid"
    # the nonce survived the rejection
    assert (await flow.verify(text, personal_sign(owner, text))).status == 200


class Counterfactual:
    """A wallet the factory will deploy at a known address, not deployed yet."""

    def __init__(self, anvil, owner) -> None:
        self.owner = owner
        self.factory = deploy(anvil, "TestWalletFactory")
        self.salt = os.urandom(32)
        args = encode(["address", "bytes32"], [owner.address, self.salt])
        predicted = call(anvil, self.factory, selector("walletAddress(address,bytes32)") + args)
        self.address = to_checksum_address("0x" + predicted[-20:].hex())
        self.deploy_calldata = selector("deploy(address,bytes32)") + args

    def wrap(self, inner_signature: str) -> str:
        """The EIP-6492 signature: factory, its calldata and the inner signature, + suffix."""
        inner = bytes.fromhex(inner_signature[2:])
        wrapped = encode(["address", "bytes", "bytes"], [self.factory, self.deploy_calldata, inner])
        return "0x" + (wrapped + ERC6492_SUFFIX).hex()


async def test_eip6492_counterfactual_wallet_signs_in(anvil, flow, client):
    wallet = Counterfactual(anvil, Account.create())
    assert anvil.rpc("eth_getCode", [wallet.address, "latest"]) == "0x"  # not deployed
    text = make_message(wallet.address, await flow.nonce())
    response = await flow.verify(text, wallet.wrap(personal_sign(wallet.owner, text)))
    assert response.status == 200, await response.text()
    token = (await response.json())["token"]
    auth = {"Authorization": f"Bearer {token}"}
    session = await (await client.get("/auth/session", headers=auth)).json()
    assert session["walletType"] == "contract"
    assert session["address"] == wallet.address
    assert anvil.rpc("eth_getCode", [wallet.address, "latest"]) == "0x"  # validation left no trace


async def test_eip6492_with_a_wrong_owner_fails(anvil, flow):
    wallet = Counterfactual(anvil, Account.create())
    text = make_message(wallet.address, await flow.nonce())
    response = await flow.verify(text, wallet.wrap(personal_sign(Account.create(), text)))
    assert response.status == 401
    assert (await response.json())["error"]["code"] == "siwe.signature.invalid"


async def test_eoa_without_code_and_wrong_signature_is_not_a_contract(flow):
    account = Account.create()
    text = make_message(account.address, await flow.nonce())
    response = await flow.verify(text, "0x" + "11" * 100)  # not 65 bytes, no code at the address
    assert response.status == 400
    assert (await response.json())["error"]["code"] == "siwe.signature.malformed"
