"""A soak: the chaos deployment at a steady mixed load, no faults, for ``GATEWAY_SOAK_MINUTES``
(``make soak``: 20; skipped when unset). Each replica's RSS and open descriptors are sampled
every 30 s; after the 5-minute warm-up they must stay flat (growth under 3 % from the start
of the last 15 minutes to the end); the chaos run's invariants hold at the end."""

from __future__ import annotations

import asyncio
import os
import statistics
import time

import aiohttp
import pytest

from tests.chaos.invariants import check_records, check_relay, table
from tests.chaos.workload import Ledger, Workload

MINUTES = float(os.environ.get("GATEWAY_SOAK_MINUTES", "0"))
SAMPLE_S = 30.0
WINDOW_S = 15 * 60.0  # the flat part: the last 15 minutes (or all but the warm-up)
WARM_UP_S = 5 * 60.0
CLIENTS = 8
PAUSE_S = 0.1

pytestmark = [
    pytest.mark.integration,
    pytest.mark.timeout(int(MINUTES * 60 + 900)),
    pytest.mark.skipif(MINUTES <= 0, reason="a soak: make soak (GATEWAY_SOAK_MINUTES=20)"),
]


def _growth(samples: list[tuple[float, int, int]], column: int, since: float) -> float:
    window = [sample for sample in samples if sample[0] >= since]
    first = statistics.mean(sample[column] for sample in window[:3])
    last = statistics.mean(sample[column] for sample in window[-3:])
    return (last - first) / first


async def test_a_soak_stays_flat(cluster, capsys):
    ledger = Ledger()
    duration = MINUTES * 60
    samples: dict[int, list[tuple[float, int, int]]] = {r.index: [] for r in cluster.replicas}
    rows = []
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64)) as session:
        workload = Workload(session, [r.url for r in cluster.replicas], ledger, seed=2)
        clients = [asyncio.create_task(workload.client(PAUSE_S)) for _ in range(CLIENTS)]
        started = time.monotonic()
        while (elapsed := time.monotonic() - started) < duration:
            answered = sum(ledger.answers.values())
            for replica in cluster.replicas:
                rss, fds = replica.resources()
                samples[replica.index].append((elapsed, rss, fds))
            rows.append(
                [f"{elapsed / 60:.1f}", str(answered)]
                + [f"{samples[i][-1][1] // 1024} MiB / {samples[i][-1][2]}" for i in samples]
            )
            await asyncio.sleep(SAMPLE_S)
        workload.running = False
        await asyncio.gather(*clients)
        anchored = await check_records(session, cluster, ledger)
        relayed = await check_relay(session, cluster, ledger)

    since = max(WARM_UP_S, duration - WINDOW_S)
    growth = {
        index: (_growth(series, 1, since), _growth(series, 2, since))
        for index, series in samples.items()
    }
    header = ["minute", "answers"] + [f"replica {i} RSS / fds" for i in samples]
    summary = [
        ["requests answered", str(sum(ledger.answers.values()))],
        ["records acknowledged / anchored", f"{len(ledger.records)} / {anchored}"],
        ["relay requests accepted / confirmed", f"{len(ledger.relayed)} / {relayed}"],
        *[
            [f"replica {i} growth after minute {since / 60:g}", f"RSS {r:+.2%}, fds {f:+.2%}"]
            for i, (r, f) in growth.items()
        ],
    ]
    with capsys.disabled():
        print(f"\n\nsoak, {MINUTES:g} min\n\n{table(header, rows)}\n\n{table(['', ''], summary)}\n")  # noqa: T201
    assert ledger.broken == [], ledger.broken[:10]
    assert ledger.unreachable == [], ledger.unreachable[:5]
    for index, (rss, fds) in growth.items():
        assert rss < 0.03, f"replica {index} RSS grew {rss:.2%}"
        assert fds < 0.03, f"replica {index} descriptors grew {fds:.2%}"
