"""What a chaos run or a soak must leave behind, checked through the API and on chain, and
the table either prints."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable
from typing import Any

import aiohttp
from eth_abi import encode
from eth_utils import function_signature_to_4byte_selector

from gateway.records import merkle
from tests.chaos.cluster import Cluster
from tests.chaos.workload import Ledger
from tests.helpers.waiting import eventually


def table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]

    def line(row: list[str]) -> str:
        return " | ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True))

    return "\n".join([line(header), "-+-".join("-" * w for w in widths), *map(line, rows)])


async def check_records(session: aiohttp.ClientSession, cluster: Cluster, ledger: Ledger) -> int:
    """Every acknowledged record listed once for its signer, on every replica, and anchored
    with a proof that verifies in Python and in the contract."""
    by_signer: dict[str, list[str]] = {}
    for record_id, signer in ledger.records.items():
        by_signer.setdefault(signer, []).append(record_id)
    for replica in cluster.replicas:
        for signer, ids in by_signer.items():
            listed: list[str] = []
            cursor = None
            while True:
                query = f"signer={signer}&limit=100" + (f"&cursor={cursor}" if cursor else "")
                async with session.get(f"{replica.url}/records?{query}") as r:
                    assert r.status == 200, await r.text()
                    page = await r.json()
                listed += [item["id"] for item in page["items"]]
                cursor = page["nextCursor"]
                if cursor is None:
                    break
            assert len(listed) == len(set(listed)), f"a record listed twice for {signer}"
            assert set(ids) <= set(listed), f"acknowledged records missing for {signer}"

    proofs = await _every_proof(session, cluster.replicas[0].url, list(ledger.records))
    verify = function_signature_to_4byte_selector("verify(bytes32,bytes32,bytes32[])")

    async def on_chain(proof: dict) -> None:
        root, leaf = bytes.fromhex(proof["root"][2:]), bytes.fromhex(proof["leaf"][2:])
        siblings = [bytes.fromhex(p[2:]) for p in proof["proof"]]
        assert merkle.verify(root, leaf, siblings)
        data = verify + encode(["bytes32", "bytes32", "bytes32[]"], [root, leaf, siblings])
        call = {"to": cluster.anchor_contract, "data": "0x" + data.hex()}
        payload = {"jsonrpc": "2.0", "id": 1, "method": "eth_call", "params": [call, "latest"]}
        async with session.post(cluster.chain.url, json=payload) as r:
            assert int((await r.json())["result"], 16) == 1, proof

    await _in_parallel([on_chain(proof) for proof in proofs.values()])
    return len(ledger.records)


async def _in_parallel(work: list[Awaitable[Any]], limit: int = 32) -> list[Any]:
    slots = asyncio.Semaphore(limit)

    async def one(item: Awaitable[Any]) -> Any:
        async with slots:
            return await item

    return await asyncio.gather(*(one(item) for item in work))


async def _every_proof(
    session: aiohttp.ClientSession, replica: str, ids: list[str], quiet_s: float = 60.0
) -> dict[str, dict]:
    """Each record's proof, asked again for those without one until none is missing; fails
    when ``quiet_s`` pass without a new proof (anchoring stopped, not just slow)."""
    found: dict[str, dict] = {}
    last: dict[str, str] = {}
    progress = time.monotonic()

    async def fetch(record_id: str) -> None:
        async with session.get(f"{replica}/records/{record_id}/proof") as r:
            if r.status == 200:
                found[record_id] = await r.json()
            else:
                last[record_id] = f"{r.status} {(await r.text())[:120]}"

    while missing := [i for i in ids if i not in found]:
        before = len(found)
        await _in_parallel([fetch(record_id) for record_id in missing])
        if len(found) > before:
            progress = time.monotonic()
        elif time.monotonic() - progress > quiet_s:
            still = [i for i in ids if i not in found]
            raise AssertionError(
                f"{len(still)} of {len(ids)} records never anchored, e.g. "
                + "; ".join(f"{i}: {last.get(i)}" for i in still[:3])
            )
        else:
            await asyncio.sleep(1)
    return found


async def check_relay(session: aiohttp.ClientSession, cluster: Cluster, ledger: Ledger) -> int:
    """Every request the relay holds (acknowledged or not) confirmed, each signer's note
    written once, and as many relayer transactions as requests: none sent twice, no gap."""

    async def every_request() -> list[dict] | None:
        items: list[dict] = []
        cursor = "0"
        while cursor is not None:
            async with session.get(
                f"{cluster.replicas[0].url}/relay?limit=100&cursor={cursor}"
            ) as r:
                assert r.status == 200, await r.text()
                page = await r.json()
            items += page["items"]
            cursor = page["nextCursor"]
        return (
            items
            if all(
                item["status"] in ("confirmed", "failed", "cancelled", "expired") for item in items
            )
            else None
        )

    held = await eventually(every_request, timeout_s=90, what="every relay request final")
    assert set(ledger.relayed) <= {item["id"] for item in held}
    assert {item["status"] for item in held} == {"confirmed"}, Counter(i["status"] for i in held)
    entries = function_signature_to_4byte_selector("entries(address)")
    guestbook = cluster.deployments["Guestbook"]
    for item in held:
        data = entries + encode(["address"], [item["from"]])
        answer = cluster.chain.rpc(
            "eth_call", [{"to": guestbook, "data": "0x" + data.hex()}, "latest"]
        )
        assert int(str(answer), 16) == 1, item
    latest = int(str(cluster.chain.rpc("eth_getTransactionCount", [cluster.relayer, "latest"])), 16)
    pending = int(
        str(cluster.chain.rpc("eth_getTransactionCount", [cluster.relayer, "pending"])), 16
    )
    assert latest == pending == len(held), (latest, pending, len(held))
    return len(held)
