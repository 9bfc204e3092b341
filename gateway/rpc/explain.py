"""How a JSON-RPC answer was made, said in its response headers (``rpc.explain_headers``).

- ``X-Gateway-Cache``: ``hit`` (the gateway's cache), ``miss`` (cacheable, asked of a
  node), ``coalesced`` (shared with an identical call in flight), ``bypass`` (not
  cacheable); a batch says how many of each (``hit=2, miss=8``).
- ``X-Gateway-Upstream``: the ``name`` of the node that answered (never its URL); a batch
  lists each once.
- ``X-Gateway-Attempts``: how many nodes were tried (the most of any call in a batch).
- ``X-Gateway-Block``: the head a ``latest`` read was answered at.
- ``X-Gateway-Consensus``: when ``rpc.consensus`` applied, the votes of the answer given
  (``agreed=2/3``; ``dispute=1/3, highest`` when ``on_dispute`` chose one); a batch says
  how many calls of each outcome (``agreed=3, dispute=1``).
- ``Server-Timing``: the gateway's own time and, when a node was asked, the node's
  (``gw;dur=0.210, upstream;dur=1.534``, in milliseconds), which browsers' dev tools show.

The same facts are fields of the access line and attributes of the server span
(``cache``, ``upstream``, ``attempts``, ``block``, ``consensus``; ``gateway.<fact>`` on the
span), named when the line is rendered, off the request's path; browsers may read the
headers across origins (``cors.EXPOSE_HEADERS``).
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass

Headers = tuple[tuple[str, str], ...]
# The access line's (and span's) name of each X-Gateway-* header.
_FIELD_OF = {
    f"X-Gateway-{name.title()}": name
    for name in ("cache", "upstream", "attempts", "block", "consensus")
}


@dataclass(slots=True)
class Explain:
    """Filled in by ``RpcService.execute`` for one call."""

    cache: str = "bypass"
    upstream: str | None = None
    attempts: int = 0
    node_s: float = 0.0
    block: int | None = None
    consensus: str | None = None

    def fields(self) -> dict[str, str]:
        """This call's facts as the access line and the span name them (``Facts``)."""
        out = {"cache": self.cache}
        if self.upstream is not None:
            out["upstream"], out["attempts"] = self.upstream, str(self.attempts)
        if self.block is not None and self.block >= 0:
            out["block"] = str(self.block)
        if self.consensus:
            out["consensus"] = self.consensus
        return out


@dataclass(frozen=True, slots=True)
class HeaderFacts:
    """The facts of a reply, read from its ``X-Gateway-*`` headers (a batch's, summed up)."""

    headers: Headers

    def fields(self) -> dict[str, str]:
        return {_FIELD_OF[name]: value for name, value in self.headers if name in _FIELD_OF}


def headers_of(explains: list[Explain], started: float, *, batch: bool) -> Headers:
    """The headers of a reply whose calls were answered as ``explains`` say, made since
    ``started`` (``time.perf_counter``)."""
    if not explains:
        return ()
    if not batch:
        return _single(explains[0], started)
    total_ms = (time.perf_counter() - started) * 1000
    node_ms = max(e.node_s for e in explains) * 1000
    counts = Counter(e.cache for e in explains)
    out = [("X-Gateway-Cache", ", ".join(f"{kind}={counts[kind]}" for kind in sorted(counts)))]
    upstreams = ", ".join(sorted({e.upstream for e in explains if e.upstream}))
    if upstreams:
        attempts = max(e.attempts for e in explains)
        out += [("X-Gateway-Upstream", upstreams), ("X-Gateway-Attempts", str(attempts))]
    votes = Counter(e.consensus.split("=", 1)[0] for e in explains if e.consensus)
    if votes:
        consensus = ", ".join(f"{kind}={votes[kind]}" for kind in sorted(votes))
        out.append(("X-Gateway-Consensus", consensus))
    out.append(("Server-Timing", _timing(total_ms, node_ms)))
    return tuple(out)


# A cache hit's headers, rendered: the lane's commonest reply, made in one formatting step
# (the same lines as rendering ``headers_of`` would give: tests/rpc/test_explain_headers.py).
_HIT = b"X-Gateway-Cache: hit\r\nServer-Timing: gw;dur=%.3f\r\n"
_HIT_AT = b"X-Gateway-Cache: hit\r\nX-Gateway-Block: %d\r\nServer-Timing: gw;dur=%.3f\r\n"


def hit_head(block: int | None, started: float) -> bytes:
    """The header lines of a cache hit answered at ``block`` (None: not a block read)."""
    total_ms = (time.perf_counter() - started) * 1000
    if block is None or block < 0:
        return _HIT % total_ms
    return _HIT_AT % (block, total_ms)


def _single(one: Explain, started: float) -> Headers:
    """One call's headers: the common reply, built with as little work as it takes."""
    total_ms = (time.perf_counter() - started) * 1000
    if one.upstream is None and one.consensus is None:  # the gateway's own answer (a hit)
        timing = ("Server-Timing", "gw;dur=%.3f" % total_ms)  # noqa: UP031  # the fast form
        if one.block is None or one.block < 0:
            return (("X-Gateway-Cache", one.cache), timing)
        return (("X-Gateway-Cache", one.cache), ("X-Gateway-Block", str(one.block)), timing)
    out = [("X-Gateway-Cache", one.cache)]
    if one.upstream is not None:
        out += [("X-Gateway-Upstream", one.upstream), ("X-Gateway-Attempts", str(one.attempts))]
    if one.block is not None and one.block >= 0:
        out.append(("X-Gateway-Block", str(one.block)))
    if one.consensus:
        out.append(("X-Gateway-Consensus", one.consensus))
    out.append(("Server-Timing", _timing(total_ms, one.node_s * 1000)))
    return tuple(out)


def _timing(total_ms: float, node_ms: float) -> str:
    if node_ms > 0:
        return "gw;dur=%.3f, upstream;dur=%.3f" % (max(total_ms - node_ms, 0.0), node_ms)  # noqa: UP031
    return "gw;dur=%.3f" % total_ms  # noqa: UP031
