"""Timestamps as the API writes them (RFC 3339, UTC, Z)."""

from __future__ import annotations

import functools
from datetime import UTC, datetime


@functools.lru_cache(maxsize=256)  # a stored group of records shares one received-at time
def rfc3339(epoch_s: float, *, timespec: str = "seconds") -> str:
    moment = datetime.fromtimestamp(epoch_s, UTC).isoformat(timespec=timespec)
    return moment.replace("+00:00", "Z")
