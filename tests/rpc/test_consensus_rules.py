"""The consensus verdict on given answers, and which calls a rule covers (no nodes)."""

from __future__ import annotations

import orjson
import pytest

from gateway.config import ConsensusRule, ConsensusSettings
from gateway.rpc.consensus import Answer, Rules, decide, pinned


def answer(upstream: str, result: object, head: int = 10) -> Answer:
    decoded = {"jsonrpc": "2.0", "id": 1, "result": result}
    return Answer(upstream, head, orjson.dumps(decoded), decoded)


def failure(upstream: str, code: int, message: str) -> Answer:
    decoded = {"jsonrpc": "2.0", "id": 1, "error": {"code": code, "message": message}}
    return Answer(upstream, 10, orjson.dumps(decoded), decoded)


def rule(**fields) -> ConsensusRule:
    return ConsensusRule(methods=("eth_call",), **fields)


def test_the_majority_wins_and_the_others_are_odd():
    verdict = decide(rule(), [answer("a", "0x1"), answer("b", "0x2"), answer("c", "0x1")], 3)
    assert verdict.outcome == "agreed"
    assert verdict.answer.upstream == "a"
    assert verdict.odd == ("b",)
    assert verdict.header == "agreed=2/3"


def test_answers_compare_as_canonical_json():
    one = answer("a", {"x": 1, "y": [1, 2]})
    two = Answer("b", 10, b"", {"id": 7, "result": {"y": [1, 2], "x": 1}})
    assert decide(rule(), [one, two], 2).outcome == "agreed"


def test_node_errors_compare_by_code_not_message():
    verdict = decide(
        rule(), [failure("a", 3, "execution reverted"), failure("b", 3, "reverted: nope")], 2
    )
    assert verdict.outcome == "agreed"


@pytest.mark.parametrize(
    ("on_dispute", "outcome", "chosen"),
    [
        ("error", "dispute_error", None),
        ("prefer_highest_block", "dispute_highest", "b"),
        ("accept_most_common", "dispute_common", "b"),
    ],
)
def test_what_a_dispute_does(on_dispute, outcome, chosen):
    answers = [answer("a", "0x1", head=10), answer("b", "0x2", head=12)]
    verdict = decide(rule(agreement=2, on_dispute=on_dispute), answers, 3)
    assert verdict.outcome == outcome
    assert (verdict.answer.upstream if verdict.answer else None) == chosen
    assert verdict.odd == ()  # nobody is known wrong in a dispute


def test_too_few_answers_are_not_a_dispute():
    verdict = decide(rule(agreement=2), [answer("a", "0x1")], 3)
    assert verdict.outcome == "low_participants"
    assert verdict.answer is None
    assert decide(rule(), [], 3).outcome == "low_participants"


def test_agreement_above_participants_is_refused():
    with pytest.raises(ValueError, match="agreement must be at most participants"):
        ConsensusRule(methods=("eth_call",), participants=2, agreement=3)


def test_which_calls_a_rule_covers():
    rules = Rules(
        ConsensusSettings(
            rules=(
                ConsensusRule(methods=("eth_getBalance",), pinned_only=True),
                ConsensusRule(methods=("eth_get*",)),
            )
        )
    )
    who = "0x" + "11" * 20
    assert rules.for_call("eth_getBalance", [who, "latest"]) is None  # pinned only
    assert rules.for_call("eth_getBalance", [who, "0x10"]) is not None
    assert rules.for_call("eth_getCode", [who, "latest"]) is not None
    assert rules.for_call("eth_chainId", []) is None


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        (["0x" + "11" * 20, "0x10"], True),
        (["0x" + "11" * 20, "latest"], False),
        ([{"to": "0x" + "11" * 20}, {"blockHash": "0x" + "ab" * 32}], True),
        ([{"fromBlock": "0x1", "toBlock": "0x5"}], True),
        ([{"fromBlock": "0x1", "toBlock": "latest"}], False),
        ([{"address": "0x" + "11" * 20}], False),  # eth_getLogs without a range: latest
        ([], False),
    ],
)
def test_pinned(params, expected):
    assert pinned(params) is expected
