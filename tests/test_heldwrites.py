"""Writes held until the loop's pass ends: each transport gets its bytes once, in order,
and nothing is given to a transport that is closing."""

from __future__ import annotations

import asyncio

import pytest

from gateway.heldwrites import HeldWrites


class RecordingTransport(asyncio.WriteTransport):
    """A transport that keeps what it is given (the lane's are sockets: see tests/lane)."""

    def __init__(self, *, fails: bool = False) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closing = False
        self.aborted = False
        self.fails = fails

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self.fails:
            raise RuntimeError("the socket is gone")
        self.writes.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closing

    def abort(self) -> None:
        self.aborted = self.closing = True


async def test_what_one_pass_holds_is_written_once_per_transport_when_it_ends():
    writes, a, b = HeldWrites(), RecordingTransport(), RecordingTransport()
    writes.write(a, b"1")
    writes.write(b, b"x")
    writes.write(a, b"2")
    writes.write(a, b"3")
    assert a.writes == b.writes == []
    assert (writes.held(a), writes.held(b)) == (3, 1)
    await asyncio.sleep(0)  # the pass ends
    assert a.writes == [b"123"]
    assert b.writes == [b"x"]
    assert writes.held(a) == 0
    writes.write(a, b"4")  # a new pass: held again, and written again
    await asyncio.sleep(0)
    assert a.writes == [b"123", b"4"]


async def test_a_flush_gives_one_transport_its_bytes_now_and_no_later_twice():
    writes, a, b = HeldWrites(), RecordingTransport(), RecordingTransport()
    writes.write(a, b"before the hand-over")
    writes.write(b, b"other")
    writes.flush(a)
    assert a.writes == [b"before the hand-over"]
    assert b.writes == []
    await asyncio.sleep(0)
    assert a.writes == [b"before the hand-over"]
    assert b.writes == [b"other"]


async def test_a_closing_or_dropped_transport_gets_nothing():
    writes, closing, gone = HeldWrites(), RecordingTransport(), RecordingTransport()
    writes.write(closing, b"late")
    writes.write(gone, b"lost")
    closing.closing = True
    writes.drop(gone)
    assert writes.held(gone) == 0
    await asyncio.sleep(0)
    assert closing.writes == gone.writes == []


async def test_a_transport_that_fails_is_aborted_and_the_others_still_get_theirs(logs):
    writes, broken, fine = HeldWrites(), RecordingTransport(fails=True), RecordingTransport()
    writes.write(broken, b"x")
    writes.write(fine, b"y")
    await asyncio.sleep(0)
    assert broken.aborted
    assert fine.writes == [b"y"]
    assert len(logs.events("held write failed; connection closed")) == 1


def test_holding_needs_a_running_loop():
    with pytest.raises(RuntimeError):
        HeldWrites().write(RecordingTransport(), b"x")
