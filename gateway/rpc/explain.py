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

The same facts are attributes of the rpc span (``gateway.cache``, ``gateway.upstream``,
``gateway.attempt``); browsers may read them across origins (``cors.EXPOSE_HEADERS``).
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass

Headers = tuple[tuple[str, str], ...]


@dataclass(slots=True)
class Explain:
    """Filled in by ``RpcService.execute`` for one call."""

    cache: str = "bypass"
    upstream: str | None = None
    attempts: int = 0
    node_s: float = 0.0
    block: int | None = None
    consensus: str | None = None


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
