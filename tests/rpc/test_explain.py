"""The explain headers' two renderings agree: a cache hit's lines, rendered at once for the
lane, are the lines ``headers_of`` gives; a call's access-line facts are its headers'."""

from __future__ import annotations

import re
import time

import pytest

from gateway.lane.answers import header_lines
from gateway.rpc.explain import Explain, HeaderFacts, headers_of, hit_head

DURATION = re.compile(rb"dur=\d+\.\d{3}")


@pytest.mark.parametrize("block", [None, -1, 0, 42, 2**40])
def test_a_hit_rendered_at_once_is_what_headers_of_renders(block):
    started = time.perf_counter()
    at_once = hit_head(block, started)
    rendered = header_lines(headers_of([Explain(cache="hit", block=block)], started, batch=False))
    assert DURATION.sub(b"dur=x", at_once) == DURATION.sub(b"dur=x", rendered)
    assert at_once.endswith(b"\r\n")
    assert b"X-Gateway-Cache: hit\r\n" in at_once


@pytest.mark.parametrize(
    "explain",
    [
        Explain(cache="hit"),
        Explain(cache="hit", block=7),
        Explain(cache="miss", upstream="node-a", attempts=2, node_s=0.001, block=9),
        Explain(cache="coalesced", upstream="node-b", attempts=1),
        Explain(cache="bypass", upstream="node-a", attempts=1, consensus="agreed=2/3"),
        Explain(cache="miss", upstream="node-a", attempts=1, consensus="dispute=1/3, highest"),
    ],
)
def test_a_calls_facts_are_its_headers(explain):
    headers = headers_of([explain], time.perf_counter(), batch=False)
    assert explain.fields() == HeaderFacts(headers).fields()


def test_a_batchs_facts_sum_its_calls_up():
    explains = [Explain(cache="hit"), Explain(cache="miss", upstream="a", attempts=2)]
    facts = HeaderFacts(headers_of(explains, time.perf_counter(), batch=True)).fields()
    assert facts == {"cache": "hit=1, miss=1", "upstream": "a", "attempts": "2"}
