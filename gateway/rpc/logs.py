"""eth_getLogs over wide ranges: split into chunks, fetch them concurrently, merge in order.

A node answers a range that reaches past its head with the logs up to its head, and
refuses one that starts past it; so chunks stop at the tip the gateway knows, and the last
chunk keeps the query's own ``toBlock`` (a block mined since the last head poll is in it,
as it would be in the node's answer). The range limit counts the blocks up to the tip.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gateway.errors import GatewayError
from gateway.rpc.jsonrpc import LIMIT_EXCEEDED


class LogRangeTooLarge(GatewayError):
    http_status = 200
    rpc_code = LIMIT_EXCEEDED
    code = "rpc.logs_range_too_large"


@dataclass(frozen=True, slots=True)
class LogsPlan:
    chunks: list[tuple[int, int]]


def _number(value: Any, *, latest: int) -> int | None:  # noqa: ANN401  # a block reference
    if value is None or value == "latest":
        return latest
    if value == "earliest":
        return 0
    if isinstance(value, str) and value.startswith("0x"):
        try:
            return int(value, 16)
        except ValueError:
            return None
    return None  # safe, finalized, pending: left to the node


def plan(params: Any, *, latest: int, chunk_blocks: int, max_range: int) -> LogsPlan | None:  # noqa: ANN401
    """How to fetch an eth_getLogs query: None to send it as it is; raises
    LogRangeTooLarge past ``max_range`` blocks."""
    if not isinstance(params, list) or not params or not isinstance(params[0], dict):
        return None
    query = params[0]
    if "blockHash" in query or latest < 0:
        return None
    start = _number(query.get("fromBlock"), latest=latest)
    end = _number(query.get("toBlock"), latest=latest)
    if start is None or end is None or end < start or start > latest:
        return None  # the node's own answer (an empty or refused range)
    end = min(end, latest)
    span = end - start + 1
    if span > max_range:
        raise LogRangeTooLarge(
            f"eth_getLogs over {span} blocks exceeds the limit of {max_range}; "
            "narrow fromBlock/toBlock",
            data={"maxRange": max_range, "requestedRange": span},
        )
    if span <= chunk_blocks:
        return None
    chunks = [
        (low, min(low + chunk_blocks - 1, end)) for low in range(start, end + 1, chunk_blocks)
    ]
    return LogsPlan(chunks)


def chunk_params(params: list[Any], low: int, high: int, *, last: bool) -> list[Any]:
    """The query of one chunk; the ``last`` one keeps the query's ``toBlock``."""
    query = dict(params[0])
    query["fromBlock"] = hex(low)
    if not last:
        query["toBlock"] = hex(high)
    return [query, *params[1:]]
