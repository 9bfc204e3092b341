"""EIP-1559 fees for the relayer's transactions, from ``eth_feeHistory``, and their bumps."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from web3 import AsyncWeb3

from gateway.config import RelaySettings

GWEI = 10**9


@dataclass(frozen=True, slots=True)
class Fees:
    max_fee: int
    priority_fee: int


async def suggest(w3: AsyncWeb3[Any], settings: RelaySettings) -> Fees:
    """Twice the next block's base fee plus the median tip of the last blocks (at least
    ``min_priority_fee_gwei``): it stays includable through several full blocks."""
    history = await w3.eth.fee_history(5, "latest", [50])
    base = int(history["baseFeePerGas"][-1])
    tips = sorted(int(reward[0]) for reward in history.get("reward", []) if reward)
    tip = max(tips[len(tips) // 2] if tips else 0, int(settings.min_priority_fee_gwei * GWEI))
    cap = int(settings.max_fee_gwei * GWEI)
    return Fees(min(2 * base + tip, cap), min(tip, cap))


def bump(previous: Fees, fresh: Fees, settings: RelaySettings) -> Fees | None:
    """Fees for a replacement: at least ``bump_percent`` over the previous ones (nodes want
    10 %), and no less than what the chain asks now; None when the ceiling allows no bump."""
    cap = int(settings.max_fee_gwei * GWEI)
    if previous.max_fee >= cap:
        return None
    factor = 100 + settings.bump_percent

    def raised(old: int) -> int:
        return -(-old * factor // 100) + 1  # rounded up, and never equal for small values

    max_fee = min(max(raised(previous.max_fee), fresh.max_fee), cap)
    priority = min(max(raised(previous.priority_fee), fresh.priority_fee), max_fee)
    return Fees(max_fee, priority)
