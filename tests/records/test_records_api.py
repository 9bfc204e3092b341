"""Signed records end to end on a real anvil: submit, read, list, anchor, prove."""

import asyncio
import base64
import io
import json

import orjson
import pytest
import sqlalchemy as sa
from eth_abi import encode
from eth_account import Account
from eth_account.messages import _hash_eip191_message, encode_typed_data
from eth_utils import function_signature_to_4byte_selector

from gateway.app import create_app
from gateway.records import merkle
from gateway.records.routes import ANCHORER
from gateway.storage import STORAGE
from gateway.storage.schema import record_nonces, records
from tests.helpers.chain import call, deploy
from tests.helpers.lane import LaneTestServer
from tests.helpers.metrics import sample
from tests.identity.conftest import SignInFlow
from tests.records.conftest import MAIL_TYPES, mail, sign_typed

pytestmark = pytest.mark.integration


async def _count(client) -> int:
    async with client.app[STORAGE].engine.connect() as connection:
        return (
            await connection.execute(sa.select(sa.func.count()).select_from(records))
        ).scalar_one()


async def test_submit_read_list_anchor_and_prove(records_client, chain, anchor_contract):
    alice = Account.create()
    typed = mail(alice.address)
    response = await records_client.post(
        "/records", json={"typedData": typed, "signature": sign_typed(alice, typed)}
    )
    assert response.status == 201, await response.text()
    created = await response.json()
    assert created["signer"] == alice.address
    assert len(created["id"]) == 66

    again = await records_client.post(
        "/records", json={"typedData": typed, "signature": sign_typed(alice, typed)}
    )
    assert again.status == 200
    assert (await again.json())["id"] == created["id"]

    record = await (await records_client.get(f"/records/{created['id']}")).json()
    assert record["typedData"]["message"]["contents"] == "hello"
    assert record["anchor"] is None
    listed = await (await records_client.get(f"/records?signer={alice.address}")).json()
    assert [item["id"] for item in listed["items"]] == [created["id"]]
    assert (await records_client.get(f"/records/{created['id']}/proof")).status == 404

    for index in range(4):  # a few more records in the batch
        other = mail(alice.address, contents=f"more {index}")
        await records_client.post(
            "/records", json={"typedData": other, "signature": sign_typed(alice, other)}
        )
    batch = await records_client.app[ANCHORER].anchor_once()
    assert batch is not None

    proof = await (await records_client.get(f"/records/{created['id']}/proof")).json()
    assert proof["contract"].lower() == anchor_contract.lower()
    assert proof["chainId"] == 31337
    root, leaf = bytes.fromhex(proof["root"][2:]), bytes.fromhex(proof["leaf"][2:])
    siblings = [bytes.fromhex(p[2:]) for p in proof["proof"]]
    assert merkle.verify(root, leaf, siblings)  # in Python
    selector = function_signature_to_4byte_selector("verify(bytes32,bytes32,bytes32[])")
    on_chain = call(
        chain,
        anchor_contract,
        selector + encode(["bytes32", "bytes32", "bytes32[]"], [root, leaf, siblings]),
    )
    assert on_chain[-1] == 1  # the contract's verify() agrees
    wrong = call(
        chain,
        anchor_contract,
        selector + encode(["bytes32", "bytes32", "bytes32[]"], [root, b"\x01" * 32, siblings]),
    )
    assert wrong[-1] == 0
    receipt = chain.rpc("eth_getTransactionReceipt", [proof["txHash"]])
    assert int(receipt["blockNumber"], 16) == proof["blockNumber"]
    anchored = await (await records_client.get(f"/records/{created['id']}")).json()
    assert anchored["anchor"]["root"] == proof["root"]
    metrics = await (await records_client.get("/metrics")).text()
    assert sample(metrics, "gateway_anchor_batches_total", outcome="confirmed") == 1.0
    assert sample(metrics, "gateway_records_pending_anchor") == 0.0
    assert 'gateway_records_submitted_total{outcome="created"} 5.0' in metrics
    assert 'gateway_records_submitted_total{outcome="duplicate"} 1.0' in metrics


async def test_cursor_pages_are_stable_under_concurrent_inserts(records_client):
    alice = Account.create()

    async def submit(contents):
        typed = mail(alice.address, contents=contents)
        response = await records_client.post(
            "/records", json={"typedData": typed, "signature": sign_typed(alice, typed)}
        )
        assert response.status == 201
        return (await response.json())["id"]

    first = [await submit(f"first {i}") for i in range(20)]
    seen, cursor = [], None
    writers = asyncio.gather(*(submit(f"during {i}") for i in range(20)))
    while True:
        url = f"/records?signer={alice.address}&limit=7" + (f"&cursor={cursor}" if cursor else "")
        page = await (await records_client.get(url)).json()
        seen += [item["id"] for item in page["items"]]
        cursor = page["nextCursor"]
        if cursor is None:
            break
    during = await writers
    assert seen[:20] == first  # in order, none skipped
    assert len(seen) == len(set(seen))  # none twice
    assert set(seen) <= set(first) | set(during)


@pytest.mark.parametrize(
    ("mutate", "status", "code"),
    [
        (lambda t: t["domain"].update(chainId=1), 422, "records.domain_not_allowed"),
        (lambda t: t["message"].update(deadline=1), 422, "records.expired"),
        (lambda t: t.update(primaryType="Nope"), 422, "records.invalid_typed_data"),
        (lambda t: t["message"].update(to="not an address"), 422, "records.invalid_typed_data"),
        (lambda t: t.update(extra=1), 422, "records.invalid_typed_data"),
        (
            lambda t: t.update(
                types={"EIP712Domain": MAIL_TYPES["EIP712Domain"], "Mäil": MAIL_TYPES["Mail"]},
                primaryType="Mäil",
            ),
            422,
            "records.invalid_typed_data",
        ),
        (lambda t: t["message"].update(contents="x" * 70_000), 413, "records.too_large"),
    ],
)
async def test_rejected_records_leave_nothing(records_client, mutate, status, code):
    alice = Account.create()
    typed = mail(alice.address)
    mutate(typed)
    try:
        signature = sign_typed(alice, typed)
    except Exception:  # noqa: BLE001  # eth-account refuses to sign some of these
        signature = "0x" + "11" * 65
    response = await records_client.post(
        "/records",
        data=io.BytesIO(orjson.dumps({"typedData": typed, "signature": signature})),
        headers={"Content-Type": "application/json"},
    )
    assert response.status == status, await response.text()
    assert (await response.json())["error"]["code"] == code
    assert await _count(records_client) == 0


@pytest.mark.parametrize(
    ("signature", "status", "code"),
    [
        ("0x", 401, "records.bad_signature"),
        ("0x" + "11" * 64, 401, "records.bad_signature"),
        ("0x" + "11" * 66, 401, "records.bad_signature"),
        ("0xzz", 422, "request.invalid_params"),
    ],
)
async def test_bad_signatures(records_client, signature, status, code):
    typed = mail(Account.create().address)
    response = await records_client.post(
        "/records", json={"typedData": typed, "signature": signature}
    )
    assert response.status == status
    assert (await response.json())["error"]["code"] == code
    assert await _count(records_client) == 0


async def test_high_s_signature_is_rejected(records_client):
    from gateway.identity.siwe import SECP256K1_N

    alice = Account.create()
    typed = mail(alice.address)
    raw = bytes.fromhex(sign_typed(alice, typed)[2:])
    s = int.from_bytes(raw[32:64], "big")
    malleable = (
        raw[:32] + (SECP256K1_N - s).to_bytes(32, "big") + bytes((27 + ((raw[64] - 27) ^ 1),))
    )
    response = await records_client.post(
        "/records", json={"typedData": typed, "signature": "0x" + malleable.hex()}
    )
    assert response.status == 401
    assert "high" in (await response.json())["error"]["message"]
    assert await _count(records_client) == 0


async def test_someone_elses_signature_with_a_named_signer_fails(records_client):
    alice, mallory = Account.create(), Account.create()
    typed = mail(alice.address)
    response = await records_client.post(
        "/records",
        json={"typedData": typed, "signature": sign_typed(mallory, typed), "signer": alice.address},
    )
    assert response.status == 401
    assert await _count(records_client) == 0


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        (b"{nope", 400, "request.malformed_json"),
        (b"[" * 3000 + b"]" * 3000, 400, "request.malformed_json"),
        (b'{"typedData": 1, "signature": "0x"}', 422, "request.invalid_params"),
        (b'{"signature": "0x"}', 422, "request.invalid_params"),
    ],
)
async def test_malformed_bodies(records_client, body, status, code):
    response = await records_client.post(
        "/records", data=io.BytesIO(body), headers={"Content-Type": "application/json"}
    )
    assert response.status == status
    assert (await response.json())["error"]["code"] == code


async def test_uint256_beyond_64_bits_is_kept_exact(records_client):
    """A JSON number over 2**64 (wei amounts are) must be hashed and stored digit for digit:
    orjson alone would read it as a float."""
    alice = Account.create()
    big = 10**20 + 7
    typed = mail(alice.address, message={"nonce": big})
    body = json.dumps({"typedData": typed, "signature": sign_typed(alice, typed)})
    response = await records_client.post(
        "/records", data=body, headers={"Content-Type": "application/json"}
    )
    assert response.status == 201, await response.text()
    record_id = (await response.json())["id"]
    assert record_id == "0x" + _hash_eip191_message(encode_typed_data(full_message=typed)).hex()
    stored = json.loads(await (await records_client.get(f"/records/{record_id}")).read())
    assert stored["typedData"]["message"]["nonce"] == big


@pytest.mark.parametrize(
    "number", ["1e20", "100000000000000000000.0", "-100000000000000000000", "1.5"]
)
async def test_non_integers_and_out_of_range_numbers_are_refused(records_client, number):
    alice = Account.create()
    typed = mail(alice.address)
    body = json.dumps({"typedData": typed, "signature": sign_typed(alice, typed)})
    body = body.replace(f'"nonce": {typed["message"]["nonce"]}', f'"nonce": {number}')
    response = await records_client.post(
        "/records", data=body, headers={"Content-Type": "application/json"}
    )
    assert response.status == 422
    assert (await response.json())["error"]["code"] == "records.invalid_typed_data"
    assert await _count(records_client) == 0


@pytest.mark.parametrize("depth", [900, 1020])
async def test_deep_bodies_with_long_numbers_are_a_clear_error(records_client, depth):
    """The exact-integer parse (the standard library's) has its own recursion limit."""
    body = b'{"typedData": ' + b"[" * depth + b"123456789012345678901234" + b"]" * depth + b"}"
    response = await records_client.post(
        "/records", data=io.BytesIO(body), headers={"Content-Type": "application/json"}
    )
    assert response.status in {400, 422}
    assert (await response.json())["error"]["code"] in {
        "request.malformed_json",
        "request.invalid_params",
    }
    assert await _count(records_client) == 0


async def test_deeply_nested_struct_types_are_refused(records_client):
    types = {"EIP712Domain": MAIL_TYPES["EIP712Domain"]}
    message: dict = {}
    node = message
    for depth in range(200):
        types[f"T{depth}"] = [{"name": "child", "type": f"T{depth + 1}"}]
        node["child"] = {}
        node = node["child"]
    types["T200"] = [{"name": "v", "type": "uint256"}]
    node["v"] = 1
    typed = {
        "types": types,
        "primaryType": "T0",
        "domain": {"name": "x", "chainId": 31337},
        "message": message,
    }
    response = await records_client.post(
        "/records", json={"typedData": typed, "signature": "0x" + "11" * 65}
    )
    assert response.status in {401, 422}
    assert await _count(records_client) == 0


@pytest.mark.parametrize(
    "payload",
    [
        b'{"s": 18446744073709551615}',
        b'{"s": 9223372036854775808}',
        b'{"s": -1}',
        b'{"s": 1.0}',
        b'{"s": "1"}',
        b'{"x": 1}',
        b"[]",
        b"nope",
    ],
)
async def test_forged_cursors_are_refused(records_client, payload):
    cursor = base64.urlsafe_b64encode(payload).rstrip(b"=").decode()
    response = await records_client.get(f"/records?cursor={cursor}")
    assert response.status == 422
    assert (await response.json())["error"]["code"] == "records.bad_cursor"


async def test_submissions_are_rate_limited_per_caller(
    aiohttp_client, chain, make_settings, records_env
):
    settings = make_settings(
        upstreams=[chain.url],
        GATEWAY_RECORDS__SUBMIT_RATE_PER_S="0.01",
        GATEWAY_RECORDS__SUBMIT_BURST="2",
        **records_env,
    )
    client = await aiohttp_client(LaneTestServer(create_app(settings)))
    alice = Account.create()
    statuses = []
    for index in range(3):
        typed = mail(alice.address, contents=f"flood {index}")
        response = await client.post(
            "/records", json={"typedData": typed, "signature": sign_typed(alice, typed)}
        )
        statuses.append(response.status)
    assert statuses == [201, 201, 429]
    assert int(response.headers["Retry-After"]) >= 1
    assert (await response.json())["error"]["code"] == "rate_limited"
    assert await _count(client) == 2  # the refused one was not stored
    junk = await client.post(
        "/records", data=b"{nope", headers={"Content-Type": "application/json"}
    )
    assert junk.status == 429  # limited before any parsing or verification


async def test_unknown_and_malformed_ids(records_client):
    assert (await records_client.get("/records/0x" + "ab" * 32)).status == 404
    bad = await records_client.get("/records/not-an-id")
    assert bad.status == 422
    assert (await bad.json())["error"]["code"] == "records.bad_id"
    assert (await records_client.get("/records?cursor=%%%")).status == 422
    assert (await records_client.get("/records?limit=0")).status == 422
    assert (await records_client.get("/records?signer=0x12")).status == 422


async def test_schema_and_session_policies(aiohttp_client, chain, make_settings, records_env):
    schema = {"Mail": {"Mail": MAIL_TYPES["Mail"]}}  # primaryType -> all its types
    env = {
        **records_env,
        "GATEWAY_RECORDS__SCHEMAS": orjson.dumps(schema).decode(),
        "GATEWAY_RECORDS__REQUIRE_SESSION_SIGNER": "true",
        "GATEWAY_RECORDS__FRESH_NONCE": "true",
    }
    client = await aiohttp_client(
        LaneTestServer(create_app(make_settings(upstreams=[chain.url], **env)))
    )
    alice = Account.create()
    token = (await SignInFlow(client).sign_in(alice))["token"]
    auth = {"Authorization": f"Bearer {token}"}

    typed = mail(alice.address)
    assert (
        await client.post(
            "/records",
            json={"typedData": typed, "signature": sign_typed(alice, typed)},
            headers=auth,
        )
    ).status == 201

    changed = mail(alice.address)
    changed["types"] = {**MAIL_TYPES, "Mail": MAIL_TYPES["Mail"][:-1]}
    del changed["message"]["nonce"]
    response = await client.post(
        "/records",
        json={"typedData": changed, "signature": sign_typed(alice, changed)},
        headers=auth,
    )
    assert (await response.json())["error"]["code"] == "records.schema_mismatch"

    other_type = {
        "types": {
            "EIP712Domain": MAIL_TYPES["EIP712Domain"],
            "Note": [{"name": "n", "type": "uint256"}],
        },
        "primaryType": "Note",
        "domain": typed["domain"],
        "message": {"n": 1},
    }
    response = await client.post(
        "/records",
        json={"typedData": other_type, "signature": sign_typed(alice, other_type)},
        headers=auth,
    )
    assert (await response.json())["error"]["code"] == "records.type_not_allowed"

    bob = Account.create()
    by_bob = mail(bob.address)
    response = await client.post(
        "/records", json={"typedData": by_bob, "signature": sign_typed(bob, by_bob)}, headers=auth
    )
    assert response.status == 403
    assert (await response.json())["error"]["code"] == "records.signer_mismatch"

    reused = mail(alice.address, contents="other", message={"nonce": typed["message"]["nonce"]})
    response = await client.post(
        "/records", json={"typedData": reused, "signature": sign_typed(alice, reused)}, headers=auth
    )
    assert response.status == 409
    assert (await response.json())["error"]["code"] == "records.nonce_reused"
    assert await _count(client) == 1
    async with client.app[STORAGE].engine.connect() as connection:
        assert (
            await connection.execute(sa.select(sa.func.count()).select_from(record_nonces))
        ).scalar_one() == 1


async def test_private_records_are_read_by_signer_and_recipient_only(
    aiohttp_client, chain, make_settings, records_env
):
    env = {**records_env, "GATEWAY_RECORDS__VISIBILITY": "private"}
    client = await aiohttp_client(
        LaneTestServer(create_app(make_settings(upstreams=[chain.url], **env)))
    )
    alice, bob, eve = Account.create(), Account.create(), Account.create()
    typed = mail(alice.address, to=bob.address)
    record_id = (
        await (
            await client.post(
                "/records", json={"typedData": typed, "signature": sign_typed(alice, typed)}
            )
        ).json()
    )["id"]
    tokens = {}
    for name, account in (("alice", alice), ("bob", bob), ("eve", eve)):
        client.session.cookie_jar.clear()
        tokens[name] = (await SignInFlow(client).sign_in(account))["token"]
    client.session.cookie_jar.clear()
    assert (await client.get(f"/records/{record_id}")).status == 404
    for name, status in (("alice", 200), ("bob", 200), ("eve", 404)):
        response = await client.get(
            f"/records/{record_id}", headers={"Authorization": f"Bearer {tokens[name]}"}
        )
        assert response.status == status, name
    listed = await (await client.get(f"/records?signer={alice.address}")).json()
    assert listed["items"] == []
    listed = await (
        await client.get(
            f"/records?signer={alice.address}", headers={"Authorization": f"Bearer {tokens['bob']}"}
        )
    ).json()
    assert [item["id"] for item in listed["items"]] == [record_id]


async def test_contract_wallet_records_use_eip1271(records_client, chain):
    owner = Account.create()
    wallet = deploy(chain, "TestSmartWallet", ["address"], [owner.address])
    typed = mail(wallet)
    from eth_account.messages import _hash_eip191_message, encode_typed_data

    digest = _hash_eip191_message(encode_typed_data(full_message=typed))
    signature = Account.unsafe_sign_hash(digest, owner.key).signature.to_0x_hex()
    response = await records_client.post(
        "/records", json={"typedData": typed, "signature": signature, "signer": wallet}
    )
    assert response.status == 201, await response.text()
    record = await (await records_client.get(f"/records/{(await response.json())['id']}")).json()
    assert record["walletType"] == "contract"
    assert record["signer"].lower() == wallet.lower()


def test_cached_domain_digest_equals_encode_typed_data():
    """The domain-separator cache must give exactly eth-account's digest."""
    from eth_account.messages import _hash_eip191_message, encode_typed_data

    from gateway.records.acceptance import prepare

    alice = Account.create()
    for index in range(50):
        typed = mail(alice.address, contents=f"n{index}" * index)
        if index % 3 == 0:
            typed["domain"] = {**typed["domain"], "name": f"Other {index % 2}"}
        expected = bytes(_hash_eip191_message(encode_typed_data(full_message=typed)))
        assert prepare(typed, max_bytes=1 << 20).id == expected
        assert prepare(typed, max_bytes=1 << 20).id == expected  # the cached path
