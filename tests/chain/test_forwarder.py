"""The gasless building blocks on a real anvil: OpenZeppelin's ERC2771Forwarder as deployed by
the gateway executes a request signed by a wallet with no ETH, and the target sees the signer
(not the relayer) as the sender; a replay and a tampered request are refused."""

from __future__ import annotations

import time

import pytest
from eth_account import Account
from web3 import AsyncHTTPProvider, AsyncWeb3
from web3.exceptions import ContractLogicError

from gateway.chain.artifacts import load_artifact
from gateway.chain.deploy import deploy_relay_contracts, read_deployments
from gateway.relay.forward import TYPES

pytestmark = pytest.mark.integration


@pytest.fixture(name="relay_contracts")
async def _relay_contracts(anvil, tmp_path):
    w3 = AsyncWeb3(AsyncHTTPProvider(anvil.url))
    relayer = Account.from_key(anvil.accounts[3].private_key)
    deployed = await deploy_relay_contracts(w3, relayer, tmp_path / "deployments.json")
    forwarder = w3.eth.contract(
        address=deployed["GatewayForwarder"], abi=load_artifact("GatewayForwarder")["abi"]
    )
    guestbook = w3.eth.contract(
        address=deployed["Guestbook"], abi=load_artifact("Guestbook")["abi"]
    )
    yield w3, relayer, forwarder, guestbook, tmp_path / "deployments.json"
    await w3.provider.disconnect()


async def signed_request(w3, forwarder, signer, to: str, data: bytes, *, nonce=None) -> dict:
    (
        _fields,
        name,
        version,
        chain_id,
        verifying,
        _salt,
        _ext,
    ) = await forwarder.functions.eip712Domain().call()
    message = {
        "from": signer.address,
        "to": to,
        "value": 0,
        "gas": 200_000,
        "nonce": await forwarder.functions.nonces(signer.address).call()
        if nonce is None
        else nonce,
        "deadline": int(time.time()) + 3600,
        "data": data,
    }
    signature = signer.sign_typed_data(
        full_message={
            "types": TYPES,
            "primaryType": "ForwardRequest",
            "domain": {
                "name": name,
                "version": version,
                "chainId": chain_id,
                "verifyingContract": verifying,
            },
            "message": message,
        }
    ).signature
    return {key: message[key] for key in ("from", "to", "value", "gas", "deadline", "data")} | {
        "signature": signature
    }


async def execute(w3, forwarder, relayer, request: dict):
    call = forwarder.functions.execute(request)
    tx = await call.build_transaction(
        {
            "from": relayer.address,
            "nonce": await w3.eth.get_transaction_count(relayer.address, "pending"),
        }
    )
    signed = relayer.sign_transaction(tx)
    receipt = await w3.eth.wait_for_transaction_receipt(
        await w3.eth.send_raw_transaction(signed.raw_transaction)
    )
    assert receipt["status"] == 1


async def test_a_request_signed_without_eth_is_executed_as_its_signer(relay_contracts):
    w3, relayer, forwarder, guestbook, deployments = relay_contracts
    signer = Account.create()  # no ETH, ever
    assert (await forwarder.functions.eip712Domain().call())[1:3] == ["Gateway Forwarder", "1"]
    data = guestbook.encode_abi("sign", ["signed, not paid for"])
    request = await signed_request(
        w3, forwarder, signer, guestbook.address, bytes.fromhex(data[2:])
    )
    assert await forwarder.functions.verify(request).call()

    await execute(w3, forwarder, relayer, request)

    assert await guestbook.functions.entries(signer.address).call() == 1
    assert await guestbook.functions.lastNote(signer.address).call() == "signed, not paid for"
    assert await guestbook.functions.entries(relayer.address).call() == 0
    assert await forwarder.functions.nonces(signer.address).call() == 1
    assert await w3.eth.get_balance(signer.address) == 0
    chain = str(await w3.eth.chain_id)
    assert read_deployments(deployments)[chain]["Guestbook"] == guestbook.address

    # the same request again: its nonce is used, the forwarder refuses it
    assert not await forwarder.functions.verify(request).call()
    with pytest.raises(ContractLogicError):
        await forwarder.functions.execute(request).call({"from": relayer.address})


async def test_a_tampered_request_does_not_verify(relay_contracts):
    w3, _relayer, forwarder, guestbook, _ = relay_contracts
    signer = Account.create()
    data = bytes.fromhex(guestbook.encode_abi("sign", ["original"])[2:])
    request = await signed_request(w3, forwarder, signer, guestbook.address, data)
    tampered = request | {"data": bytes.fromhex(guestbook.encode_abi("sign", ["changed"])[2:])}
    assert not await forwarder.functions.verify(tampered).call()
    assert not await forwarder.functions.verify(request | {"gas": 1}).call()
    assert await forwarder.functions.verify(request).call()


async def test_a_direct_call_records_the_caller(relay_contracts):
    w3, relayer, _forwarder, guestbook, _ = relay_contracts
    tx = await guestbook.functions.sign("direct").build_transaction(
        {"from": relayer.address, "nonce": await w3.eth.get_transaction_count(relayer.address)}
    )
    signed = relayer.sign_transaction(tx)
    await w3.eth.wait_for_transaction_receipt(
        await w3.eth.send_raw_transaction(signed.raw_transaction)
    )
    assert await guestbook.functions.lastNote(relayer.address).call() == "direct"
