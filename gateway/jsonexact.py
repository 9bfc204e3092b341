"""JSON with integers of any size, fast for the common case.

orjson (the fast path everywhere) reads an integer beyond 64 bits as a float and refuses to
write one. Clients may send such integers (an EIP-712 uint256 of 10**20 wei, a JSON-RPC id,
a hostile parameter); these functions keep them exact by falling back to the standard
library for the rare document that has one.
"""

from __future__ import annotations

import json
import re
from typing import Any

import orjson

# Any integer literal outside orjson's 64-bit range has at least 19 digits.
_LONG_NUMBER = re.compile(rb"\d{19}")


def loads_exact(raw: bytes) -> Any:  # noqa: ANN401  # JSON
    """``raw`` as JSON, every integer exact; ValueError if it is not JSON (or too deep).

    Only a document with a run of 19 digits and a float in orjson's reading is parsed again.
    """
    data = orjson.loads(raw)  # JSONDecodeError is a ValueError; orjson stops at 1024 levels
    if _LONG_NUMBER.search(raw) is None or not _has_float(data):
        return data
    try:
        return json.loads(raw)
    except RecursionError as exc:
        raise ValueError("nested too deep") from exc


def dumps_exact(value: Any, *, sort_keys: bool = False) -> bytes:  # noqa: ANN401
    """Compact JSON (keys sorted if asked), integers of any size written digit for digit."""
    try:
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS if sort_keys else None)
    except TypeError:  # an integer beyond 64 bits (orjson's only refusal for parsed JSON)
        return json.dumps(
            value, sort_keys=sort_keys, separators=(",", ":"), ensure_ascii=False
        ).encode()


def _has_float(value: object) -> bool:
    if isinstance(value, float):
        return True
    if isinstance(value, dict):
        return any(_has_float(item) for item in value.values())
    if isinstance(value, list):
        return any(_has_float(item) for item in value)
    return False
