"""Writes held until the event loop has run every callback of its current pass.

A reply written to a loopback socket does the receiver's TCP work in the sender's system
call, and wakes the receiver's thread when it sleeps: on the bench's machines that wake-up
(an interrupt to the other core) was 21 % of the gateway's CPU, one per reply, since a fast
client is back asleep by the time the next reply goes. A deployment behind a local proxy or
sidecar pays the same. The replies the lane makes as one poll's requests arrive (cache
hits) are therefore written together when the pass ends: the first wakes the client, the
rest find it awake, and it sends its next requests together. A cached ``eth_chainId`` went
from 18.2-21.3k to 26.6-30.9k req/s on one core; what a reply waits is the rest of its
pass, which that pass's own replies waited anyway for the core. A reply a task makes (a
node's answer) is written at once: holding those measured slower (``lane/protocol.py``).

The bytes of one transport are written in the order they were held; its owner flushes them
(``flush``) before it closes or hands the transport to another protocol.
"""

from __future__ import annotations

import asyncio

import structlog

log = structlog.get_logger("gateway.heldwrites")


def _write(transport: asyncio.WriteTransport, parts: list[bytes]) -> None:
    if transport.is_closing():
        return
    try:
        transport.write(parts[0] if len(parts) == 1 else b"".join(parts))
    except Exception:  # one broken transport must not keep the others' bytes
        log.exception("held write failed; connection closed")
        transport.abort()


class _Held:
    __slots__ = ("parts", "size")

    def __init__(self, data: bytes) -> None:
        self.parts = [data]
        self.size = len(data)


class HeldWrites:
    """Bytes held per transport, written by one ``call_soon`` callback per pass."""

    __slots__ = ("_held",)

    def __init__(self) -> None:
        self._held: dict[asyncio.WriteTransport, _Held] = {}

    def write(self, transport: asyncio.WriteTransport, data: bytes) -> None:
        held = self._held
        if not held:
            asyncio.get_running_loop().call_soon(self.flush_all)
        before = held.get(transport)
        if before is None:
            held[transport] = _Held(data)
        else:  # a list, not a concatenation: a pipelined burst's replies are copied once
            before.parts.append(data)
            before.size += len(data)

    def held(self, transport: asyncio.WriteTransport) -> int:
        """Bytes held for ``transport``, not yet given to it."""
        before = self._held.get(transport)
        return 0 if before is None else before.size

    def flush(self, transport: asyncio.WriteTransport) -> None:
        """Give ``transport`` what is held for it now (before it is closed or handed on)."""
        before = self._held.pop(transport, None)
        if before is not None:
            _write(transport, before.parts)

    def drop(self, transport: asyncio.WriteTransport) -> None:
        """Forget what is held for a transport whose connection is gone."""
        self._held.pop(transport, None)

    def flush_all(self) -> None:
        held, self._held = self._held, {}
        for transport, before in held.items():
            _write(transport, before.parts)


__all__ = ["HeldWrites"]
