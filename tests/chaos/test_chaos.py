"""A chaos run: two replicas on PostgreSQL and Redis, two nodes, toxiproxy between them all,
a mixed workload throughout, and one fault after another (latency, resets, a node down,
both down, a slow link, PostgreSQL down and partitioned, Redis down and slow, a replica
killed with -9 and started again). Invariants, checked at the end: every acknowledged
record stored once and anchored with a proof that verifies on chain; every accepted relay
request confirmed and sent once, the relayer's nonces without a gap; no 500 and every
error a JSON body with a code; each fault recovered within 30 s of its heal; RSS and open
descriptors of the replica that lived through it all flat. The table is printed.

``CHAOS_HOLD_S`` (default 5) holds each fault longer: ``make chaos`` runs it with 30."""

from __future__ import annotations

import asyncio
import os
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import aiohttp
import pytest
from eth_account import Account

from tests.chaos.cluster import Cluster
from tests.chaos.invariants import check_records, check_relay, table
from tests.chaos.workload import Ledger, Workload

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

HOLD_S = float(os.environ.get("CHAOS_HOLD_S", "5"))
CALM_S = 2.0
RECOVERY_S = 30.0
CLIENTS = 6
PAUSE_S = 0.2  # between a client's operations: about 25 requests/s in all


@dataclass
class Fault:
    name: str
    inject: Callable[[Cluster], object]
    probe: str  # what must work again after the heal: nodes | storage | redis | replicas


def _both_down(cluster: Cluster) -> None:
    cluster.toxiproxy.enabled("node_a", False)
    cluster.toxiproxy.enabled("node_b", False)


def _slow_link(cluster: Cluster) -> None:
    cluster.toxiproxy.toxic("node_b", "slicer", average_size=64, size_variation=32, delay=500)
    cluster.toxiproxy.toxic("postgres", "bandwidth", rate=64)


FAULTS = [
    Fault(
        "node_a latency 500 ms",
        lambda c: c.toxiproxy.toxic("node_a", "latency", latency=500),
        "nodes",
    ),
    Fault(
        "node_a resets connections",
        lambda c: c.toxiproxy.toxic("node_a", "reset_peer", timeout=0),
        "nodes",
    ),
    Fault("node_a down", lambda c: c.toxiproxy.enabled("node_a", False), "nodes"),
    Fault("both nodes down", _both_down, "nodes"),
    Fault("node_b sliced, postgres 64 KB/s", _slow_link, "storage"),
    Fault("postgres down", lambda c: c.toxiproxy.enabled("postgres", False), "storage"),
    Fault("postgres partitioned", lambda c: c.toxiproxy.partition("postgres"), "storage"),
    Fault("redis down", lambda c: c.toxiproxy.enabled("redis", False), "redis"),
    Fault(
        "redis latency 300 ms",
        lambda c: c.toxiproxy.toxic("redis", "latency", latency=300),
        "redis",
    ),
    Fault("replica 1 killed -9", lambda c: c.replicas[1].kill(), "replicas"),
]


async def _works(session: aiohttp.ClientSession, cluster: Cluster, probe: str) -> bool:
    """Whether what ``probe`` names answers on every replica again."""
    for replica in cluster.replicas:
        url = replica.url
        try:
            if probe in ("nodes", "replicas"):
                payload = {"jsonrpc": "2.0", "id": 1, "method": "eth_blockNumber"}
                async with session.post(f"{url}/rpc", json=payload) as r:
                    if r.status != 200 or "result" not in await r.json():
                        return False
                signer = Account.create().address
                async with session.get(f"{url}/relay/forwarder?from={signer}") as r:
                    if r.status != 200:
                        return False
            if probe in ("storage", "replicas"):
                async with session.get(f"{url}/readyz") as r:
                    if r.status != 200:
                        return False
            if probe in ("redis", "storage"):
                async with session.get(f"{url}/auth/nonce") as r:
                    if r.status != 200:
                        return False
        except aiohttp.ClientError:
            return False
    return True


async def _recovered_in(session: aiohttp.ClientSession, cluster: Cluster, probe: str) -> float:
    healed = time.monotonic()
    while not await _works(session, cluster, probe):
        assert time.monotonic() - healed < RECOVERY_S, f"{probe} not recovered in {RECOVERY_S} s"
        await asyncio.sleep(0.1)
    return time.monotonic() - healed


async def _run_faults(
    session: aiohttp.ClientSession, cluster: Cluster, ledger: Ledger
) -> tuple[list[list[str]], list[tuple[float, float]]]:
    rows: list[list[str]] = []
    kill_windows: list[tuple[float, float]] = []
    for fault in FAULTS:
        started = time.monotonic()
        fault.inject(cluster)
        await asyncio.sleep(HOLD_S)
        if fault.probe == "replicas":
            await asyncio.to_thread(cluster.replicas[1].start)
            kill_windows.append((started, time.monotonic() + 1))
        else:
            cluster.toxiproxy.reset()
        recovered = await _recovered_in(session, cluster, fault.probe)
        during = ledger.since(started)
        outcomes = Counter(
            f"{status} {code}".strip() for _, _, status, code in during if status >= 400 or code
        )
        rows.append(
            [
                fault.name,
                f"{len(during)}",
                f"{sum(1 for _, _, status, code in during if status < 400 and not code)}",
                ", ".join(f"{name} x{count}" for name, count in outcomes.most_common(4)) or "-",
                f"{recovered:.1f}",
            ]
        )
        await asyncio.sleep(CALM_S)
    return rows, kill_windows


async def test_chaos_loses_nothing(cluster, capsys):
    ledger = Ledger()
    connector = aiohttp.TCPConnector(limit=64)
    timeout = aiohttp.ClientTimeout(total=40)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        workload = Workload(session, [r.url for r in cluster.replicas], ledger)
        clients = [asyncio.create_task(workload.client(PAUSE_S)) for _ in range(CLIENTS)]
        await asyncio.sleep(3)  # warm-up
        survivor = cluster.replicas[0]
        before = survivor.resources()
        rows, kill_windows = await _run_faults(session, cluster, ledger)
        workload.running = False
        await asyncio.gather(*clients)
        await asyncio.sleep(2)
        after = survivor.resources()
        anchored = await check_records(session, cluster, ledger)
        relayed = await check_relay(session, cluster, ledger)

    summary = [
        ["requests answered", str(sum(ledger.answers.values()))],
        ["records acknowledged / anchored", f"{len(ledger.records)} / {anchored}"],
        ["relay requests accepted / confirmed", f"{len(ledger.relayed)} / {relayed}"],
        ["connections refused or reset (killed replica)", str(len(ledger.unreachable))],
        ["survivor RSS KiB before / after", f"{before[0]} / {after[0]}"],
        ["survivor open fds before / after", f"{before[1]} / {after[1]}"],
    ]
    report = "\n\n".join(
        [
            f"chaos run, each fault held {HOLD_S:g} s",
            table(["fault", "answers", "ok", "errors (status code xn)", "recovered s"], rows),
            table(["", ""], summary),
        ]
    )
    with capsys.disabled():
        print("\n" + report + "\n")  # noqa: T201  # the run's table, in make test's output

    assert ledger.broken == [], ledger.broken[:10]
    outside = [
        what for at, what in ledger.unreachable if not any(a <= at <= b for a, b in kill_windows)
    ]
    assert outside == [], outside[:5]
    assert len(ledger.records) > 50, "the workload barely ran"
    assert len(ledger.relayed) > 10, "the workload barely ran"
    assert after[1] <= before[1] + 16, (before, after)
    assert after[0] <= before[0] * 1.3, (before, after)
    for replica in cluster.replicas:
        errors = [line for line in replica.logs() if line.get("level") in ("error", "critical")]
        assert errors == [], errors[:3]
