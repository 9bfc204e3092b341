"""acceptance: every EIP-712 value kind checked exactly, the digest equal to eth-account's on
rich shapes, and the domain / schema / deadline rules of the policy."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from eth_account.messages import _hash_eip191_message, encode_typed_data
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.config import DomainRule, RecordsSettings
from gateway.records.acceptance import (
    MAX_DEPTH,
    DomainNotAllowed,
    Expired,
    InvalidTypedData,
    RecordTooLarge,
    SchemaMismatch,
    TypeNotAllowed,
    _check_value,
    _schema_of,
    check_policy,
    prepare,
    readers_of,
)

ALICE = "0x" + "a1" * 20
BOB = "0x" + "b2" * 20
CONTRACT = "0xCcCCccccCCCCcCCCCCCcCcCccCcCCCcCcccccccC"

ORDER_TYPES: dict[str, list[dict[str, str]]] = {
    "EIP712Domain": [
        {"name": "name", "type": "string"},
        {"name": "version", "type": "string"},
        {"name": "chainId", "type": "uint256"},
        {"name": "verifyingContract", "type": "address"},
    ],
    "Person": [{"name": "wallet", "type": "address"}, {"name": "name", "type": "string"}],
    "Order": [
        {"name": "maker", "type": "Person"},
        {"name": "takers", "type": "Person[]"},
        {"name": "amounts", "type": "uint256[2]"},
        {"name": "delta", "type": "int8"},
        {"name": "open", "type": "bool"},
        {"name": "payload", "type": "bytes"},
        {"name": "tag", "type": "bytes32"},
        {"name": "grid", "type": "uint8[][]"},
    ],
}
DOMAIN = {"name": "Exchange", "version": "2", "chainId": 31337, "verifyingContract": CONTRACT}


def order(**message: Any) -> dict[str, Any]:
    body = {
        "maker": {"wallet": ALICE, "name": "Alice"},
        "takers": [{"wallet": BOB, "name": "Bob"}],
        "amounts": [1, 2**256 - 1],
        "delta": -128,
        "open": True,
        "payload": "0xdeadbeef",
        "tag": "0x" + "00" * 31 + "01",
        "grid": [[0, 255], []],
    }
    body.update(message)
    return {"types": ORDER_TYPES, "primaryType": "Order", "domain": dict(DOMAIN), "message": body}


def eth_account_digest(typed: dict[str, Any]) -> bytes:
    return bytes(_hash_eip191_message(encode_typed_data(full_message=copy.deepcopy(typed))))


def test_a_rich_record_has_eth_accounts_digest_on_both_paths() -> None:
    typed = order()
    expected = eth_account_digest(typed)
    assert prepare(typed, max_bytes=1 << 20).id == expected
    assert prepare(typed, max_bytes=1 << 20).id == expected  # domain separator cached


people = st.fixed_dictionaries(
    {
        "wallet": st.binary(min_size=20, max_size=20).map(lambda b: "0x" + b.hex()),
        "name": st.text(max_size=20),
    }
)


@settings(max_examples=60, deadline=None)
@given(
    maker=people,
    takers=st.lists(people, max_size=3),
    amounts=st.lists(st.integers(0, 2**256 - 1), min_size=2, max_size=2),
    delta=st.integers(-128, 127),
    open_=st.booleans(),
    payload=st.binary(max_size=40).map(lambda b: "0x" + b.hex()),
    tag=st.binary(min_size=32, max_size=32).map(lambda b: "0x" + b.hex()),
    grid=st.lists(st.lists(st.integers(0, 255), max_size=3), max_size=3),
    domain_name=st.sampled_from(["Exchange", "Other"]),
)
def test_digest_equals_eth_account_for_any_accepted_value(
    maker: dict[str, str],
    takers: list[dict[str, str]],
    amounts: list[int],
    delta: int,
    open_: bool,
    payload: str,
    tag: str,
    grid: list[list[int]],
    domain_name: str,
) -> None:
    typed = order(
        maker=maker,
        takers=takers,
        amounts=amounts,
        delta=delta,
        open=open_,
        payload=payload,
        tag=tag,
        grid=grid,
    )
    typed["domain"]["name"] = domain_name
    assert prepare(typed, max_bytes=1 << 20).id == eth_account_digest(typed)


@pytest.mark.parametrize(
    ("message", "where"),
    [
        ({"maker": {"wallet": ALICE}}, "message.maker"),  # a field missing
        ({"maker": {"wallet": ALICE, "name": "A", "age": 3}}, "message.maker"),  # one extra
        ({"maker": [ALICE, "A"]}, "message.maker"),  # not an object
        ({"takers": {"wallet": BOB, "name": "B"}}, "message.takers"),  # not an array
        ({"takers": [{"wallet": "0x1234", "name": "B"}]}, "message.takers[0].wallet"),
        ({"takers": [{"wallet": BOB, "name": 7}]}, "message.takers[0].name"),
        ({"amounts": [1]}, "message.amounts"),  # fixed size 2
        ({"amounts": [1, 2, 3]}, "message.amounts"),
        ({"amounts": [1, 2**256]}, "message.amounts[1]"),  # over uint256
        ({"amounts": [-1, 2]}, "message.amounts[0]"),  # unsigned
        ({"amounts": [1.5, 2]}, "message.amounts[0]"),  # not an integer
        ({"amounts": [True, 2]}, "message.amounts[0]"),  # a bool is not a number
        ({"amounts": ["0xzz", 2]}, "message.amounts[0]"),
        ({"delta": 128}, "message.delta"),  # int8 is -128..127
        ({"delta": -129}, "message.delta"),
        ({"open": 1}, "message.open"),
        ({"open": "true"}, "message.open"),
        ({"payload": "deadbeef"}, "message.payload"),  # no 0x
        ({"payload": "0xabc"}, "message.payload"),  # odd length
        ({"payload": 5}, "message.payload"),
        ({"tag": "0x01"}, "message.tag"),  # bytes32 needs 32
        ({"tag": "0x" + "zz" * 32}, "message.tag"),
        ({"grid": [[256]]}, "message.grid[0][0]"),
        ({"grid": [1, 2]}, "message.grid[0]"),
    ],
)
def test_each_value_kind_is_checked_exactly(message: dict[str, Any], where: str) -> None:
    with pytest.raises(InvalidTypedData) as caught:
        prepare(order(**message), max_bytes=1 << 20)
    assert caught.value.message.startswith(where), caught.value.message


json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**257), 2**257)
    | st.floats(allow_nan=False)
    | st.text(max_size=4)
    | st.sampled_from([ALICE, ALICE.upper(), "0x", "0xdead", "0x1", "0x" + "00" * 32, "7"])
)
person_like = st.fixed_dictionaries(
    {
        "wallet": st.sampled_from([ALICE, BOB]) | json_scalars,
        "name": st.text(max_size=3) | json_scalars,
    },
    optional={"x": json_scalars},
)
# Shapes near each field's type, so that most draws are almost right: one value wrong deep
# inside is what the two checks could disagree on.
near_values = {
    "scalar": json_scalars,
    "list": st.lists(json_scalars, max_size=3),
    "list of lists": st.lists(st.lists(json_scalars, max_size=3), max_size=3),
    "person": person_like,
    "people": st.lists(person_like, max_size=3),
}


@pytest.mark.parametrize("field", [f["name"] for f in ORDER_TYPES["Order"]])
@settings(max_examples=120, deadline=None)
@given(data=st.data())
def test_the_compiled_check_agrees_with_the_walk(field: str, data: st.DataObject) -> None:
    """A schema seen before is checked by its compiled predicates; a refusal is explained
    by the walk. Both must say the same of any value."""
    value = data.draw(near_values[data.draw(st.sampled_from(sorted(near_values)))])
    typed = order(**{field: value})
    try:
        _check_value(typed["types"], "Order", typed["message"], "message", 0)
        walked = True
    except InvalidTypedData:
        walked = False
    assert _schema_of(typed).check(typed["message"], 0) is walked


def test_nesting_past_the_limit_is_refused_on_both_paths() -> None:
    types = {"Node": [{"name": "next", "type": "Node[]"}]}
    message: dict[str, Any] = {"next": []}
    for _ in range(MAX_DEPTH):
        message = {"next": [message]}
    typed = {"types": types, "primaryType": "Node", "domain": {}, "message": message}
    assert not _schema_of(typed).check(message, 0)
    with pytest.raises(InvalidTypedData, match="nested deeper"):
        prepare(typed, max_bytes=1 << 20)
    with pytest.raises(InvalidTypedData, match="nested deeper"):  # the schema is known now
        prepare(typed, max_bytes=1 << 20)


def test_unknown_types_and_non_identifiers_are_refused() -> None:
    typed = order()
    typed["types"] = {
        **ORDER_TYPES,
        "Order": [*ORDER_TYPES["Order"], {"name": "x", "type": "Money"}],
    }
    typed["message"]["x"] = 1
    with pytest.raises(InvalidTypedData, match="unknown type Money"):
        prepare(typed, max_bytes=1 << 20)
    typed = order()
    typed["types"] = {**ORDER_TYPES, "Bad Name": []}
    with pytest.raises(InvalidTypedData, match="not an identifier"):
        prepare(typed, max_bytes=1 << 20)


@pytest.mark.parametrize(
    "typed",
    [
        [],
        {"types": {}, "primaryType": "Order", "domain": {}, "message": {}},
        {**order(), "primaryType": "EIP712Domain"},
        {**order(), "types": {"Order": [{"name": "a"}]}},  # a field without a type
        {**order(), "types": {"Order": "a:uint"}},
        {**order(), "domain": []},
        {**order(), "signature": "0x"},  # an unexpected member
    ],
)
def test_malformed_shapes_are_refused(typed: Any) -> None:
    with pytest.raises(InvalidTypedData):
        prepare(typed, max_bytes=1 << 20)


def test_size_is_counted_on_the_canonical_json() -> None:
    typed = order(takers=[{"wallet": BOB, "name": "x" * 2000}])
    with pytest.raises(RecordTooLarge):
        prepare(typed, max_bytes=1024)
    assert prepare(typed, max_bytes=4096).primary_type == "Order"


def policy(**values: Any) -> RecordsSettings:
    return RecordsSettings.model_validate(values)


@pytest.mark.parametrize(
    ("rule", "accepted"),
    [
        ({"name": "Exchange"}, True),
        ({"name": "Exchange", "version": "2", "chainId": 31337}, True),
        ({"verifyingContract": CONTRACT.lower()}, True),  # any case
        ({"name": "exchange"}, False),  # names are exact
        ({"version": "1"}, False),
        ({"chainId": 1}, False),
        ({"verifyingContract": "0x" + "00" * 20}, False),
    ],
)
def test_configured_domains(rule: dict[str, Any], accepted: bool) -> None:
    candidate = prepare(order(), max_bytes=1 << 20)
    settings_ = policy(domains=[DomainRule.model_validate(rule)])
    if accepted:
        check_policy(candidate, settings_, chain_ids={31337})
    else:
        with pytest.raises(DomainNotAllowed):
            check_policy(candidate, settings_, chain_ids={31337})


def test_a_chain_id_given_as_a_string_is_compared_as_a_number() -> None:
    typed = order()
    typed["domain"]["chainId"] = "0x7a69"
    candidate = prepare(typed, max_bytes=1 << 20)
    check_policy(candidate, policy(domains=[{"chainId": 31337}]), chain_ids={31337})
    check_policy(candidate, policy(), chain_ids={31337})
    with pytest.raises(DomainNotAllowed):
        check_policy(candidate, policy(), chain_ids={1})


def test_registered_schemas() -> None:
    candidate = prepare(order(), max_bytes=1 << 20)
    schema = {k: v for k, v in ORDER_TYPES.items() if k != "EIP712Domain"}
    check_policy(candidate, policy(schemas={"Order": schema}), chain_ids={31337})
    with pytest.raises(TypeNotAllowed):
        check_policy(candidate, policy(schemas={"Mail": schema}), chain_ids={31337})
    renamed = {**schema, "Person": [{"name": "wallet", "type": "address"}]}
    with pytest.raises(SchemaMismatch):
        check_policy(candidate, policy(schemas={"Order": renamed}), chain_ids={31337})


def test_deadlines() -> None:
    types = copy.deepcopy(ORDER_TYPES)
    types["Order"].append({"name": "validUntil", "type": "uint64"})
    typed = order(validUntil=1_000)
    typed["types"] = types
    candidate = prepare(typed, max_bytes=1 << 20)
    check_policy(candidate, policy(), chain_ids={31337}, now=999)
    with pytest.raises(Expired):
        check_policy(candidate, policy(), chain_ids={31337}, now=1_001)
    check_policy(candidate, policy(deadline_fields=["deadline"]), chain_ids={31337}, now=1_001)


def test_readers_are_the_signer_and_the_recipient_fields() -> None:
    types = copy.deepcopy(ORDER_TYPES)
    types["Order"].append({"name": "recipients", "type": "address[]"})
    typed = order(recipients=[BOB.upper().replace("0X", "0x"), ALICE])
    typed["types"] = types
    candidate = prepare(typed, max_bytes=1 << 20)
    signer = "0x" + "c3" * 20
    assert readers_of(candidate, policy(), signer) == {signer, BOB, ALICE}
    assert readers_of(candidate, policy(recipient_fields=[]), signer) == {signer}


TREE_TYPES: dict[str, list[dict[str, str]]] = {
    "EIP712Domain": [{"name": "name", "type": "string"}],
    "Node": [
        {"name": "label", "type": "string"},
        {"name": "owner", "type": "address"},
        {"name": "weights", "type": "int64[]"},
        {"name": "flags", "type": "bool[2]"},
        {"name": "digest", "type": "bytes4"},
        {"name": "children", "type": "Leaf[]"},
    ],
    "Leaf": [{"name": "value", "type": "uint32"}, {"name": "data", "type": "bytes"}],
}


def _mixed_case(raw: bytes) -> str:
    from eth_utils import to_checksum_address

    return to_checksum_address("0x" + raw.hex())


@settings(max_examples=80, deadline=None)
@given(
    label=st.text(max_size=30),
    owner=st.binary(min_size=20, max_size=20).flatmap(
        lambda raw: st.sampled_from(["0x" + raw.hex(), "0x" + raw.hex().upper(), _mixed_case(raw)])
    ),
    weights=st.lists(st.integers(-(2**63), 2**63 - 1), max_size=4),
    written=st.sampled_from(["int", "decimal", "hex"]),
    flags=st.lists(st.booleans(), min_size=2, max_size=2),
    digest=st.binary(min_size=4, max_size=4).map(lambda b: "0x" + b.hex()),
    leaves=st.lists(
        st.fixed_dictionaries(
            {
                "value": st.integers(0, 2**32 - 1),
                "data": st.binary(max_size=12).map(lambda b: "0x" + b.hex()),
            }
        ),
        max_size=3,
    ),
)
def test_compiled_digest_equals_eth_account_on_another_schema(
    label, owner, weights, written, flags, digest, leaves
) -> None:
    """Integers written as strings take eth-account's own path; everything else the compiled
    one; both give eth-account's digest."""

    def write(number: int) -> int | str:
        if written == "hex" and number >= 0:  # eth-account reads no negative hex
            return hex(number)
        return str(number) if written != "int" else number

    typed = {
        "types": TREE_TYPES,
        "primaryType": "Node",
        "domain": {"name": "Tree"},
        "message": {
            "label": label,
            "owner": owner,
            "weights": [write(w) for w in weights],
            "flags": flags,
            "digest": digest,
            "children": leaves,
        },
    }
    prepare(typed, max_bytes=1 << 20)  # the domain's first record: eth-account's whole path
    assert prepare(typed, max_bytes=1 << 20).id == eth_account_digest(typed)


def test_an_address_in_any_case_has_eth_accounts_digest() -> None:
    good = _mixed_case(bytes.fromhex("a1" * 20))
    wrong_checksum = good[:2] + good[2:].swapcase()
    prepare(order(), max_bytes=1 << 20)  # the domain separator is cached: the compiled path
    for wallet in (good, wrong_checksum, good.lower()):
        typed = order(maker={"wallet": wallet, "name": "Alice"})
        assert prepare(typed, max_bytes=1 << 20).id == eth_account_digest(typed)
