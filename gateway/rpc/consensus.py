"""Consensus: a call asked of several nodes at once, answered only when enough agree.

``rpc.consensus.rules`` say which methods (policy patterns), how many nodes take part
(``participants``) and how many must give the same answer (``agreement``). Answers are
compared as canonical JSON: the ``result``, or for a node's JSON-RPC error its code (error
messages differ between clients that mean the same). A node that could not be reached is
not an answer. When an answer has the votes, the nodes that said something else are
counted (``gateway_upstream_misbehavior_total``) and sidelined for ``punish_s``; when none
has, ``on_dispute`` decides: ``error`` (-32003 naming each answer and its nodes),
``prefer_highest_block`` or ``accept_most_common``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson
from opentelemetry import trace
from opentelemetry.trace import INVALID_SPAN, SpanKind

from gateway.config import ConsensusRule, ConsensusSettings
from gateway.errors import GatewayError, UpstreamError
from gateway.rpc.policy import matches
from gateway.rpc.pool import NoUpstream
from gateway.rpc.upstream import Upstream, decode_reply
from gateway.telemetry import Metrics, is_sampled

if TYPE_CHECKING:
    from gateway.rpc.pool import UpstreamPool

__all__ = ["Answer", "Consensus", "ConsensusDispute", "Rules", "Verdict", "decide", "pinned"]

_TAGS = {"latest", "pending", "safe", "finalized", "earliest"}


class ConsensusDispute(GatewayError):
    """The nodes asked did not agree (or too few could be asked) and the rule says so."""

    http_status = 502
    rpc_code = -32003
    code = "rpc.consensus_dispute"
    default_message = "the nodes did not agree on the answer"
    header = ""  # X-Gateway-Consensus of the failed call


@dataclass(frozen=True, slots=True)
class Answer:
    upstream: str
    head: int  # the node's latest block when it answered
    reply: bytes
    decoded: dict[str, Any]

    @property
    def canonical(self) -> bytes:
        if "error" in self.decoded:
            error = self.decoded["error"]
            code = error.get("code") if isinstance(error, dict) else None
            return b"error:" + orjson.dumps(code)
        return orjson.dumps(self.decoded.get("result"), option=orjson.OPT_SORT_KEYS)


@dataclass(frozen=True, slots=True)
class Verdict:
    answer: Answer | None  # None: a dispute to raise
    agreed: int  # votes of the answer given (or of the most common one)
    asked: int  # nodes that answered
    outcome: str  # agreed | dispute_error | dispute_highest | dispute_common | low_participants
    odd: tuple[str, ...] = ()  # nodes outside the agreement, to punish

    @property
    def header(self) -> str:
        """``X-Gateway-Consensus``: ``agreed=2/3`` or ``dispute=1/3, highest_block``."""
        if self.outcome == "agreed":
            return f"agreed={self.agreed}/{self.asked}"
        how = self.outcome.removeprefix("dispute_")
        return f"dispute={self.agreed}/{self.asked}" + ("" if how == "error" else f", {how}")


class Rules:
    """The configured rules; ``for_call`` is memoised per method."""

    def __init__(self, settings: ConsensusSettings) -> None:
        self.settings = settings
        self._by_method: dict[str, ConsensusRule | None] = {}

    def __bool__(self) -> bool:
        return bool(self.settings.rules)

    def for_call(self, method: str, params: Any) -> ConsensusRule | None:  # noqa: ANN401  # JSON
        if method not in self._by_method:
            self._by_method[method] = next(
                (rule for rule in self.settings.rules if matches(method, rule.methods)), None
            )
        rule = self._by_method[method]
        if rule is not None and rule.pinned_only and not pinned(params):
            return None
        return rule


def pinned(params: Any) -> bool:  # noqa: ANN401  # JSON
    """Whether a call names its block by number or hash (and no tag anywhere)."""
    found = False
    for value in _block_refs(params):
        if isinstance(value, str) and value in _TAGS:
            return False
        found = True
    return found


def _block_refs(params: Any) -> Iterable[object]:  # noqa: ANN401
    items = params if isinstance(params, list) else [params]
    for item in items:
        if isinstance(item, str) and (item in _TAGS or _is_quantity_or_hash(item)):
            yield item
        elif isinstance(item, dict):
            for key in ("blockHash", "blockNumber", "fromBlock", "toBlock"):
                if key in item:
                    yield item[key]


def _is_quantity_or_hash(text: str) -> bool:
    return text.startswith("0x") and (len(text) <= 18 or len(text) == 66)


def decide(rule: ConsensusRule, answers: list[Answer], asked: int) -> Verdict:
    """The verdict on what ``answers`` said, of the ``asked`` nodes (those that could not
    be reached gave none)."""
    groups: dict[bytes, list[Answer]] = {}
    for answer in answers:
        groups.setdefault(answer.canonical, []).append(answer)
    if not groups:
        return Verdict(None, 0, asked, "low_participants")
    # Most votes first; among equals, the group whose best node is highest.
    ranked = sorted(groups.values(), key=lambda g: (-len(g), -max(a.head for a in g)))
    top = ranked[0]
    if len(top) >= rule.agreement:
        odd = tuple(a.upstream for group in ranked[1:] for a in group)
        return Verdict(top[0], len(top), asked, "agreed", odd)
    if rule.on_dispute == "accept_most_common":
        return Verdict(top[0], len(top), asked, "dispute_common")
    if rule.on_dispute == "prefer_highest_block":
        highest = max(answers, key=lambda a: a.head)
        return Verdict(highest, len(groups[highest.canonical]), asked, "dispute_highest")
    outcome = "dispute_error" if len(answers) >= rule.agreement else "low_participants"
    return Verdict(None, len(top), asked, outcome)


def dispute_error(verdict: Verdict, answers: list[Answer], rule: ConsensusRule) -> GatewayError:
    """-32003 with each distinct answer (shortened), the nodes that gave it, their heads."""
    groups: dict[bytes, list[Answer]] = {}
    for answer in answers:
        groups.setdefault(answer.canonical, []).append(answer)
    summary = [
        {
            "answer": _short(canonical),
            "upstreams": [a.upstream for a in group],
            "heads": [a.head for a in group],
        }
        for canonical, group in groups.items()
    ]
    if verdict.outcome == "low_participants":
        message = (
            f"consensus needs {rule.agreement} matching answers; only {len(answers)} of "
            f"{rule.participants} nodes could be asked"
        )
    else:
        message = (
            f"the nodes did not agree: {len(groups)} different answers from {len(answers)} "
            f"nodes, {rule.agreement} needed to match"
        )
    error = ConsensusDispute(message, data={"code": ConsensusDispute.code, "answers": summary})
    error.header = verdict.header
    return error


def _short(canonical: bytes, limit: int = 80) -> str:
    text = canonical.decode()
    return text if len(text) <= limit else text[: limit - 1] + "…"


class Consensus:
    """Asks a call of a rule's participants in parallel and answers by ``decide``."""

    def __init__(
        self,
        settings: ConsensusSettings,
        pool: UpstreamPool,
        metrics: Metrics,
        tracer: trace.Tracer,
    ) -> None:
        self.rules = Rules(settings)
        self.punish_s = settings.punish_s
        self.pool = pool
        self.metrics = metrics
        self.tracer = tracer

    async def ask(
        self, rule: ConsensusRule, body: bytes, label: str, *, min_head: int
    ) -> tuple[bytes, Upstream, Verdict]:
        """The agreed (or, per ``on_dispute``, chosen) reply and the node that gave it.
        Raises ConsensusDispute, or the last UpstreamError when no node answered."""
        participants = self.pool.participants(rule.participants, min_head=min_head)
        if not participants:  # none reachable: what any call gets, not a dispute
            raise NoUpstream
        by_name = {u.name: u for u in participants}
        with self._span(
            "rpc consensus", {"gateway.consensus.participants": len(participants)}
        ) as span:
            replies = await asyncio.gather(
                *(self._one(u, body, label) for u in participants), return_exceptions=True
            )
            answers: list[Answer] = []
            failure: BaseException | None = None
            for upstream, reply in zip(participants, replies, strict=True):
                if isinstance(reply, UpstreamError):
                    failure = reply
                elif isinstance(reply, BaseException):
                    raise reply
                else:
                    decoded = decode_reply(upstream.name, reply)
                    answers.append(Answer(upstream.name, upstream.head.latest, reply, decoded))
            verdict = decide(rule, answers, len(participants))
            span.set_attribute("gateway.consensus", verdict.header)
        metrics = self.metrics
        metrics.child(metrics.rpc_consensus, label, verdict.outcome).inc()
        for name in verdict.odd:
            metrics.child(metrics.upstream_misbehavior, name, label).inc()
            self.pool.sideline(by_name[name], self.punish_s)
        if verdict.answer is None:
            if not answers and failure is not None:
                raise failure
            raise dispute_error(verdict, answers, rule)
        return verdict.answer.reply, by_name[verdict.answer.upstream], verdict

    async def _one(self, upstream: Upstream, body: bytes, label: str) -> bytes:
        with self._span("rpc consensus participant", {"gateway.upstream": upstream.name}):
            return await self.pool.ask(upstream, body, label)

    @contextlib.contextmanager
    def _span(self, name: str, attributes: dict[str, str | int]) -> Iterator[trace.Span]:
        """A span when the trace is sampled; none is built otherwise."""
        if not is_sampled():
            yield INVALID_SPAN
            return
        with self.tracer.start_as_current_span(
            name, kind=SpanKind.INTERNAL, attributes=attributes
        ) as span:
            yield span
