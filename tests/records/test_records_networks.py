"""Records on a gateway of two networks: each record is anchored on the chain of its
EIP-712 domain, and its proof verifies with that chain's MerkleAnchor only."""

import json

import pytest
from eth_abi import encode
from eth_account import Account
from eth_utils import function_signature_to_4byte_selector

from gateway.app import create_app
from gateway.records.routes import ANCHORERS
from tests.conftest import SECOND_CHAIN_ID
from tests.helpers.chain import call, deploy
from tests.helpers.lane import LaneTestServer
from tests.helpers.metrics import sample
from tests.helpers.waiting import eventually
from tests.records.conftest import ANCHOR_KEY_INDEX, DOMAIN, mail, sign_typed

pytestmark = pytest.mark.integration

VERIFY = function_signature_to_4byte_selector("verify(bytes32,bytes32,bytes32[])")


@pytest.fixture(name="two_anchors")
def _two_anchors(chain, chain_b):
    return {
        each.chain_id: deploy(
            each, "MerkleAnchor", ["address"], [each.accounts[ANCHOR_KEY_INDEX].address]
        )
        for each in (chain, chain_b)
    }


@pytest.fixture(name="two_chain_records")
async def _two_chain_records(aiohttp_client, chain, chain_b, two_anchors, make_settings):
    networks = [
        {
            "chain_id": each.chain_id,
            "upstreams": [{"url": each.url}],
            "anchor": {"contract_address": two_anchors[each.chain_id]},
        }
        for each in (chain, chain_b)
    ]
    settings = make_settings(
        GATEWAY_NETWORKS=json.dumps(networks),
        GATEWAY_ANCHOR__PRIVATE_KEY=chain.accounts[ANCHOR_KEY_INDEX].private_key,
        GATEWAY_ANCHOR__INTERVAL_S="3600",  # anchored on demand
    )
    return await aiohttp_client(LaneTestServer(create_app(settings)))


async def _submit(client, typed, account) -> dict:
    response = await client.post(
        "/records", json={"typedData": typed, "signature": sign_typed(account, typed)}
    )
    assert response.status == 201, await response.text()
    return await response.json()


def _verifies(chain, contract: str, proof: dict) -> bool:
    root, leaf = bytes.fromhex(proof["root"][2:]), bytes.fromhex(proof["leaf"][2:])
    siblings = [bytes.fromhex(p[2:]) for p in proof["proof"]]
    args = encode(["bytes32", "bytes32", "bytes32[]"], [root, leaf, siblings])
    return call(chain, contract, VERIFY + args)[-1] == 1


async def test_each_record_is_anchored_on_its_own_chain(
    two_chain_records, chain, chain_b, two_anchors
):
    client, alice = two_chain_records, Account.create()
    on_first = await _submit(client, mail(alice.address, contents="first"), alice)
    second_domain = {**DOMAIN, "chainId": SECOND_CHAIN_ID}
    on_second = await _submit(
        client, mail(alice.address, contents="second", domain=second_domain), alice
    )
    no_chain = {key: value for key, value in DOMAIN.items() if key != "chainId"}
    no_chain_types = {
        **mail(alice.address)["types"],
        "EIP712Domain": [
            field
            for field in mail(alice.address)["types"]["EIP712Domain"]
            if field["name"] != "chainId"
        ],
    }
    by_default = await _submit(
        client, mail(alice.address, domain=no_chain, types=no_chain_types), alice
    )

    anchorers = client.app[ANCHORERS]
    assert set(anchorers) == {chain.chain_id, SECOND_CHAIN_ID}

    async def anchored(chain_id: int, *records: dict) -> bool:
        # On demand; the anchorer's own start-up round may hold its lock meanwhile.
        await anchorers[chain_id].anchor_once()
        for record in records:
            if (await client.get(f"/records/{record['id']}/proof")).status != 200:
                return False
        return True

    await eventually(lambda: anchored(SECOND_CHAIN_ID, on_second), what="the second chain's")
    await eventually(lambda: anchored(chain.chain_id, on_first, by_default), what="the first's")

    chains = {chain.chain_id: chain, SECOND_CHAIN_ID: chain_b}
    for record, chain_id in [
        (on_first, chain.chain_id),
        (on_second, SECOND_CHAIN_ID),
        (by_default, chain.chain_id),  # no chainId in its domain: the default network
    ]:
        proof = await (await client.get(f"/records/{record['id']}/proof")).json()
        assert proof["chainId"] == chain_id, record
        assert proof["contract"].lower() == two_anchors[chain_id].lower()
        assert _verifies(chains[chain_id], two_anchors[chain_id], proof)
        other = next(c for c in chains if c != chain_id)
        assert not _verifies(chains[other], two_anchors[other], proof)  # not anchored there
    metrics = await (await client.get("/metrics")).text()
    confirmed = "gateway_anchor_batches_total"
    for chain_id in chains:
        labels = {"network": str(chain_id), "outcome": "confirmed"}
        assert sample(metrics, confirmed, **labels) == 1.0
        assert sample(metrics, "gateway_records_pending_anchor", network=str(chain_id)) == 0.0


async def test_a_record_of_a_chain_outside_the_networks_is_refused(two_chain_records):
    client, alice = two_chain_records, Account.create()
    typed = mail(alice.address, domain={**DOMAIN, "chainId": 5})
    response = await client.post(
        "/records", json={"typedData": typed, "signature": sign_typed(alice, typed)}
    )
    assert response.status == 422
    error = (await response.json())["error"]
    assert error["code"] == "records.domain_not_allowed"
    assert "31337, 31338" in error["message"]
    listed = await (await client.get(f"/records?signer={alice.address}")).json()
    assert listed["items"] == []
