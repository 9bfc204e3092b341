"""The log sink: lines written through before serving, batched while it serves, deferred
lines rendered in their place when the batch is written."""

import asyncio
import io

import orjson

from gateway.telemetry.logsink import FLUSH_BYTES, LogSink


def render(fields: tuple[object, ...]) -> bytes:
    return orjson.dumps({"deferred": fields[0]})


def lines(stream: io.BytesIO) -> list[dict[str, object]]:
    return [orjson.loads(line) for line in stream.getvalue().splitlines()]


def test_without_batching_every_line_is_written_at_once() -> None:
    stream = io.BytesIO()
    sink = LogSink(stream)
    sink.msg(b'{"n":1}')
    sink.defer(render, (2,))
    assert lines(stream) == [{"n": 1}, {"deferred": 2}]


async def test_deferred_lines_keep_their_place_in_the_batch() -> None:
    stream = io.BytesIO()
    sink = LogSink(stream)
    rendered: list[object] = []

    def counting_render(fields: tuple[object, ...]) -> bytes:
        rendered.append(fields[0])
        return render(fields)

    async with sink.batching(interval_s=3600):
        sink.msg(b'{"n":1}')
        sink.defer(counting_render, (2,))
        sink.msg(b'{"n":3}')
        await asyncio.sleep(0)
        assert stream.getvalue() == b""  # nothing written, nothing rendered yet
        assert rendered == []
    assert lines(stream) == [{"n": 1}, {"deferred": 2}, {"n": 3}]
    assert rendered == [2]


async def test_a_full_batch_is_written_without_waiting_for_the_interval() -> None:
    stream = io.BytesIO()
    sink = LogSink(stream)
    async with sink.batching(interval_s=3600):
        count = 0
        while not stream.getvalue():
            sink.defer(render, (count,))
            count += 1
            assert count <= FLUSH_BYTES  # a flush must come
        assert lines(stream) == [{"deferred": n} for n in range(count)]
