"""A soak: the chaos deployment at a steady mixed load, no faults, for ``GATEWAY_SOAK_MINUTES``
(``make soak``: 20; skipped when unset). Each replica's RSS and open descriptors are sampled
every 30 s; after the 5-minute warm-up they must stay flat (growth under 3 % from the start
of the last 15 minutes to the end); the chaos run's invariants hold at the end. Descriptors follow the connection pools under
load (they open to their caps on demand): 30 s after the load, no more may be open than at
the start of the window (two more allowed)."""

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
SAMPLE_S = min(30.0, MINUTES * 60 / 12) if MINUTES > 0 else 30.0
WINDOW_S = 15 * 60.0  # the flat part: the last 15 minutes (or all but the warm-up)
WARM_UP_S = 5 * 60.0
IDLE_S = 30.0  # after the load: longer than the keep-alive of the pools' idle connections
CLIENTS = 8
PAUSE_S = 0.1

pytestmark = [
    pytest.mark.integration,
    pytest.mark.timeout(int(MINUTES * 60 + 900)),
    pytest.mark.skipif(MINUTES <= 0, reason="a soak: make soak (GATEWAY_SOAK_MINUTES=20)"),
]


async def _cache_kib(session: aiohttp.ClientSession, url: str) -> int:
    """What the replica's response cache holds (gateway_rpc_cache_bytes), in KiB."""
    async with session.get(f"{url}/metrics") as response:
        text = await response.text()
    held = [
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("gateway_rpc_cache_bytes{")
    ]
    return int(sum(held) // 1024)


def _growth(samples: list[tuple[float, int, int]], column: int, since: float) -> float:
    window = [sample for sample in samples if sample[0] >= since]
    first = statistics.mean(sample[column] for sample in window[:3])
    last = statistics.mean(sample[column] for sample in window[-3:])
    return (last - first) / first


async def test_a_soak_stays_flat(cluster, capsys):
    ledger = Ledger()
    duration = MINUTES * 60
    samples: dict[int, list[tuple[float, int, int]]] = {r.index: [] for r in cluster.replicas}
    cached: dict[int, list[int]] = {r.index: [] for r in cluster.replicas}  # KiB, per sample
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
                cached[replica.index].append(await _cache_kib(session, replica.url))
            rows.append(
                [f"{elapsed / 60:.1f}", str(answered)]
                + [
                    f"{samples[i][-1][1] // 1024} MiB / {samples[i][-1][2]} / "
                    f"{cached[i][-1] / 1024:.1f} MiB"
                    for i in samples
                ]
            )
            await asyncio.sleep(SAMPLE_S)
        workload.running = False
        await asyncio.gather(*clients)
        await asyncio.sleep(IDLE_S)  # idle keep-alive connections time out
        idle = {r.index: r.resources()[1] for r in cluster.replicas}
        anchored = await check_records(session, cluster, ledger)
        relayed = await check_relay(session, cluster, ledger)

    since = max(min(WARM_UP_S, duration / 4), duration - WINDOW_S)  # short runs: a quarter
    growth = {
        index: (_growth(series, 1, since), _growth(series, 2, since))
        for index, series in samples.items()
    }
    header = ["minute", "answers"] + [f"replica {i} RSS / fds / cache" for i in samples]
    summary = [
        ["requests answered", str(sum(ledger.answers.values()))],
        ["records acknowledged / anchored", f"{len(ledger.records)} / {anchored}"],
        ["relay requests accepted / confirmed", f"{len(ledger.relayed)} / {relayed}"],
        *[
            [f"replica {i} growth after minute {since / 60:g}", f"RSS {r:+.2%}, fds {f:+.2%}"]
            for i, (r, f) in growth.items()
        ],
        *[[f"replica {i} fds {IDLE_S:g} s after the load", str(n)] for i, n in idle.items()],
    ]
    with capsys.disabled():
        print(f"\n\nsoak, {MINUTES:g} min\n\n{table(header, rows)}\n\n{table(['', ''], summary)}\n")  # noqa: T201
    assert ledger.broken == [], ledger.broken[:10]
    assert ledger.unreachable == [], ledger.unreachable[:5]
    for index, (rss, _fds) in growth.items():
        assert rss < 0.03, f"replica {index} RSS grew {rss:.2%}"
        # Descriptors under load follow the connection pools (they open up to their caps on
        # demand and close idle ones): a leak is what stays open once the load is gone.
        window = [s[2] for s in samples[index] if s[0] >= since][:3]
        assert idle[index] <= statistics.mean(window) + 2, (index, idle[index], window)
