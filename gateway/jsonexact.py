"""JSON with integers of any size, fast for the common case.

orjson (the fast path everywhere) reads an integer beyond 64 bits as a float and refuses to
write one. Clients may send such integers (an EIP-712 uint256 of 10**20 wei, a JSON-RPC id,
a hostile parameter); these functions keep them exact: the rare document that has one is
read by the standard library and written by orjson with those integers as raw digits.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

# Any integer literal outside orjson's 64-bit range has at least 19 digits. Found by mapping
# every digit to "0" and everything else to "x" and looking for 19 zeros: 0.7 us for a
# 641-byte record where the regex \d{19} took 5.9 us (it restarts at every digit).
_DIGITS_ONLY = bytes(0x30 if 0x30 <= byte <= 0x39 else 0x78 for byte in range(256))
_LONG_RUN = b"0" * 19


def _has_long_number(raw: bytes) -> bool:
    return _LONG_RUN in raw.translate(_DIGITS_ONLY)


def loads_exact(raw: bytes) -> Any:  # noqa: ANN401  # JSON
    """``raw`` as JSON, every integer exact; ValueError if it is not JSON (or too deep).

    Only a document with a run of 19 digits and a float in orjson's reading is parsed again.
    """
    data = orjson.loads(raw)  # JSONDecodeError is a ValueError; orjson stops at 1024 levels
    if not _has_long_number(raw) or not _has_float(data):
        return data
    try:
        return json.loads(raw)
    except RecursionError as exc:
        raise ValueError("nested too deep") from exc


def dumps_exact(value: Any, *, sort_keys: bool = False) -> bytes:  # noqa: ANN401
    """Compact JSON (keys sorted if asked), integers of any size written digit for digit."""
    option = orjson.OPT_SORT_KEYS if sort_keys else None
    try:
        return orjson.dumps(value, option=option)
    except TypeError:  # an integer beyond 64 bits (orjson's only refusal for parsed JSON)
        return orjson.dumps(_big_ints_as_text(value), option=option)


_ORJSON_INTS = range(-(2**63), 2**64)


def exact(value: Any) -> Any:  # noqa: ANN401  # a JSON scalar
    """``value`` as orjson can write it: an integer beyond 64 bits becomes its digits."""
    if type(value) is int and value not in _ORJSON_INTS:
        return orjson.Fragment(str(value).encode())
    return value


def _big_ints_as_text(value: Any) -> Any:  # noqa: ANN401
    if isinstance(value, dict):
        return {key: _big_ints_as_text(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_big_ints_as_text(item) for item in value]
    return exact(value)


def _has_float(value: object) -> bool:
    if isinstance(value, float):
        return True
    if isinstance(value, dict):
        return any(_has_float(item) for item in value.values())
    if isinstance(value, list):
        return any(_has_float(item) for item in value)
    return False
