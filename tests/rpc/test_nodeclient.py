"""The gateway's HTTP/1.1 client to its nodes: replies framed strictly, whatever way they
arrive; connections kept alive, bounded, and never reused after a doubt."""

from __future__ import annotations

import asyncio
import base64
import contextlib
from typing import Self

import pytest

from gateway.rpc.nodeclient import (
    MAX_HEADERS,
    NodeClient,
    NodeConnectError,
    NodeReplyError,
    Reply,
    ReplyFramer,
)
from gateway.server import free_port

OK = b'{"jsonrpc":"2.0","id":1,"result":"0x1"}'


def _reply(body: bytes = OK, *extra: bytes, status: bytes = b"200 OK") -> bytes:
    head = [b"HTTP/1.1 " + status, b"Content-Type: application/json", *extra]
    if not any(
        line.lower().startswith((b"content-length", b"transfer-encoding")) for line in extra
    ):
        head.append(b"Content-Length: %d" % len(body))
    return b"\r\n".join(head) + b"\r\n\r\n" + body


def _frame(data: bytes, *, one_byte_at_a_time: bool = False, limit: int = 2**20) -> Reply | None:
    framer = ReplyFramer(limit)
    if not one_byte_at_a_time:
        return framer.feed(data) or framer.eof()
    reply = None
    for index in range(len(data)):
        reply = framer.feed(data[index : index + 1])
        if reply is not None:
            assert index == len(data) - 1, "a reply ended before its last byte"
    return reply or framer.eof()


CHUNKED = (
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"5;name=value\r\n" + OK[:5] + b"\r\n"
    b"%x\r\n" % (len(OK) - 5) + OK[5:] + b"\r\n"
    b"0\r\nX-Trailer: yes\r\n\r\n"
)


@pytest.mark.parametrize("dribbled", [False, True])
@pytest.mark.parametrize(
    ("raw", "keep_alive"),
    [
        (_reply(), True),
        (CHUNKED, True),
        (_reply(OK, b"Connection: close"), False),
        (_reply(OK, b"Connection: Keep-Alive, foo"), True),
        (_reply(OK).replace(b"HTTP/1.1", b"HTTP/1.0"), False),
        (_reply(OK, b"Connection: keep-alive").replace(b"HTTP/1.1", b"HTTP/1.0"), True),
        (b"HTTP/1.1 100 Continue\r\n\r\n" + _reply(), True),
        (_reply(OK).replace(b"200 OK", b"200"), True),  # no reason phrase
        (_reply(OK, b"X-Empty:"), True),
        (_reply(OK, b"Content-Encoding: identity"), True),
    ],
)
def test_replies_of_every_framing_are_read(raw, keep_alive, dribbled):
    reply = _frame(raw, one_byte_at_a_time=dribbled)
    assert reply == Reply(200, OK, keep_alive)


def test_a_body_framed_by_the_connections_end_is_read_at_the_end():
    framer = ReplyFramer(2**20)
    assert framer.feed(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n" + OK) is None
    assert framer.eof() == Reply(200, OK, keep_alive=False)


def test_a_reply_without_a_body_needs_no_length():
    assert _frame(b"HTTP/1.1 204 No Content\r\n\r\n") == Reply(204, b"", keep_alive=True)


def test_bytes_past_a_reply_end_the_connection():
    assert _frame(_reply() + b"HTTP/1.1 200").keep_alive is False


@pytest.mark.parametrize(
    "raw",
    [
        _reply(OK, b"Content-Length: %d" % len(OK), b"Content-Length: 3"),  # lengths differ
        _reply(OK, b"Content-Length: +40"),
        _reply(OK, b"Content-Length: 0x28"),
        _reply(OK, b"Transfer-Encoding: chunked", b"Content-Length: 40"),
        _reply(OK, b"Transfer-Encoding: gzip, chunked"),
        _reply(OK, b"Transfer-Encoding: chunked, identity"),
        _reply(OK, b"Content-Encoding: gzip"),
        _reply(OK, b" folded: value"),
        _reply(OK, b"X-A: b\r\n continued"),  # obs-fold
        _reply(OK, b"Bad Name: x"),
        _reply(OK, b"X-Nul: a\x00b"),
        _reply(OK, b"X-Bare: a\nX-B: c"),
        _reply(OK, b"X-Bare: a\rX-B: c"),
        b"HTTP/2 200 OK\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 20 OK\r\nContent-Length: 0\r\n\r\n",
        b"ICY 200 OK\r\nContent-Length: 0\r\n\r\n",
        _reply(OK, *[b"X-%d: v" % n for n in range(MAX_HEADERS + 1)]),
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n-1\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcd\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nbad trailer\r\n\r\n",
    ],
)
def test_a_reply_that_is_not_plain_http_is_refused(raw):
    with pytest.raises(NodeReplyError):
        _frame(raw)


def test_a_reply_larger_than_the_limit_is_refused_before_it_is_read():
    with pytest.raises(NodeReplyError, match="larger"):
        ReplyFramer(100).feed(b"HTTP/1.1 200 OK\r\nContent-Length: 101\r\n\r\n")
    chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n40\r\n" + b"x" * 64 + b"\r\n"
    with pytest.raises(NodeReplyError, match="larger"):
        ReplyFramer(100).feed(chunked + b"40\r\n")
    with pytest.raises(NodeReplyError, match="larger"):
        ReplyFramer(100).feed(b"HTTP/1.1 200 OK\r\n\r\n" + b"x" * 101)


def test_a_head_that_never_ends_is_refused():
    framer = ReplyFramer(2**20)
    framer.feed(b"HTTP/1.1 200 OK\r\n")
    filler = (b"X-Filler: " + b"y" * 100 + b"\r\n") * 600
    with pytest.raises(NodeReplyError, match="too long"):
        framer.feed(filler)


class RawNode:
    """A node of raw sockets: answers each request as ``answer(request_bytes)`` says,
    counting connections and requests."""

    def __init__(self, answer) -> None:
        self.answer = answer
        self.connections = 0
        self.open = 0
        self.most_open = 0
        self.requests: list[bytes] = []
        self.port = free_port()
        self.server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def __aenter__(self) -> Self:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        return self

    async def __aexit__(self, *_exc: object) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.open += 1
        self.most_open = max(self.most_open, self.open)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
                request = head + await reader.readexactly(length)
                self.requests.append(request)
                reply = await self.answer(request)
                if reply is None:  # hang up
                    break
                writer.write(reply)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self.open -= 1
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()


async def _ok(_request: bytes) -> bytes:
    return _reply()


async def test_calls_share_one_kept_alive_connection():
    async with RawNode(_ok) as node:
        client = NodeClient(node.url)
        replies = [await client.post(b"{}") for _ in range(20)]
        await client.close()
    assert {reply.body for reply in replies} == {OK}
    assert node.connections == 1
    first = node.requests[0]
    assert first.startswith(b"POST / HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n" % node.port)
    assert b"\r\nContent-Type: application/json\r\n" in first
    assert first.endswith(b"\r\nContent-Length: 2\r\n\r\n{}")


async def test_no_more_connections_than_the_limit_are_opened():
    async def slow(_request: bytes) -> bytes:
        await asyncio.sleep(0.02)
        return _reply()

    async with RawNode(slow) as node:
        client = NodeClient(node.url, max_connections=3)
        replies = await asyncio.gather(*(client.post(b"{}") for _ in range(30)))
        await client.close()
    assert len(replies) == 30
    assert node.most_open <= 3
    assert node.connections == 3


class ClosingWhenIdle(RawNode):
    async def _serve(self, reader, writer):  # one reply, then its idle timeout
        self.connections += 1
        head = await reader.readuntil(b"\r\n\r\n")
        self.requests.append(head + await reader.readexactly(2))
        writer.write(_reply())
        await writer.drain()
        writer.close()


async def _its_end_arrives(_client: NodeClient) -> None:
    await asyncio.sleep(0.05)  # the node's end of the idle connection comes meanwhile


async def _its_transport_closes(client: NodeClient) -> None:
    (idle,) = client._idle  # the client's own state: closing, its end not yet seen
    assert idle.transport is not None
    idle.transport.close()


@pytest.mark.parametrize(
    ("node_kind", "meanwhile"),
    [(ClosingWhenIdle, _its_end_arrives), (RawNode, _its_transport_closes)],
    ids=["the node closed it while idle", "its transport is closing"],
)
async def test_an_idle_connection_that_is_ending_is_not_reused(node_kind, meanwhile):
    async with node_kind(_ok) as node:
        client = NodeClient(node.url)
        await client.post(b"{}")
        await meanwhile(client)
        reply = await client.post(b"{}")
        await client.close()
    assert reply.body == OK
    assert node.connections == 2


async def test_a_request_the_node_took_and_then_hung_up_on_is_not_sent_again():
    async with RawNode(_ok) as node:
        client = NodeClient(node.url)
        await client.post(b"{}")
        node.answer = _hang_up  # takes the next request, then drops the connection
        with pytest.raises(NodeReplyError):
            await client.post(b'{"method":"eth_sendRawTransaction"}')
        await client.close()
    assert [r.endswith(b'eth_sendRawTransaction"}') for r in node.requests] == [False, True]


async def _hang_up(_request: bytes) -> None:
    return None


async def test_a_reply_cut_short_by_the_node_is_a_failed_reply():
    class Cutting(RawNode):
        async def _serve(self, reader, writer):
            self.connections += 1
            await reader.readuntil(b"\r\n\r\n")
            await reader.readexactly(2)
            writer.write(_reply()[:-5])
            await writer.drain()
            writer.close()

    async with Cutting(_ok) as node:
        client = NodeClient(node.url)
        with pytest.raises(NodeReplyError, match="before its reply was complete"):
            await client.post(b"{}")
        await client.close()
    assert node.connections == 1  # the first call on a new connection is not sent again


async def test_an_unreachable_node_is_a_connect_error():
    client = NodeClient(f"http://127.0.0.1:{free_port()}")
    with pytest.raises(NodeConnectError):
        await client.post(b"{}")
    await client.close()


async def test_a_call_given_up_leaves_no_reply_behind_for_the_next():
    async def answer(request: bytes) -> bytes:
        if b'"slow"' in request:
            await asyncio.sleep(0.3)
            return _reply(b'"slow answer"')
        return _reply()

    async with RawNode(answer) as node:
        client = NodeClient(node.url)
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.05):
                await client.post(b'"slow"')
        reply = await client.post(b"{}")
        await asyncio.sleep(0.35)  # the slow answer arrives on the abandoned connection
        again = await client.post(b"{}")
        await client.close()
    assert reply.body == OK
    assert again.body == OK
    assert node.connections == 2


async def test_credentials_in_the_url_are_sent_as_basic_auth_and_the_path_kept():
    async with RawNode(_ok) as node:
        client = NodeClient(f"http://us%40er:p%3Ass@127.0.0.1:{node.port}/v3/key?x=1")
        await client.post(b"{}")
        await client.close()
    request = node.requests[0]
    assert request.startswith(b"POST /v3/key?x=1 HTTP/1.1\r\n")
    expected = base64.b64encode(b"us@er:p:ss")
    assert b"\r\nAuthorization: Basic " + expected + b"\r\n" in request


async def test_the_trace_context_goes_with_the_request():
    async with RawNode(_ok) as node:
        client = NodeClient(node.url)
        parent = "00-" + "ab" * 16 + "-" + "cd" * 8 + "-01"
        await client.post(b"{}", traceparent=parent)
        await client.close()
    assert f"\r\ntraceparent: {parent}\r\n".encode() in node.requests[0]


async def test_a_reply_of_another_status_is_returned_with_its_status():
    async def busy(_request: bytes) -> bytes:
        return _reply(b'{"error":"busy"}', status=b"503 Service Unavailable")

    async with RawNode(busy) as node:
        client = NodeClient(node.url)
        reply = await client.post(b"{}")
        await client.close()
    assert (reply.status, reply.body) == (503, b'{"error":"busy"}')


def test_only_http_urls_are_taken():
    with pytest.raises(ValueError, match="not an http"):
        NodeClient("ws://127.0.0.1:1")
