"""The lane's framer: the strict subset it frames, and agreement with aiohttp's parser on
where every request ends (a disagreement would let one request smuggle another)."""

from __future__ import annotations

import asyncio

import pytest
from aiohttp.base_protocol import BaseProtocol
from aiohttp.http_parser import HttpRequestParser
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.lane.framing import MAX_HEAD_BYTES, UNFRAMED, Frame, Framer, read_frame

LIMIT = 1 << 20


def request(head: str, body: bytes = b"") -> bytes:
    return head.replace("\n", "\r\n").encode() + b"\r\n" + body


PLAIN = request(
    "POST /rpc HTTP/1.1\nHost: gw\nContent-Type: application/json\nContent-Length: 2\n", b"{}"
)


def test_a_plain_request_is_framed_whole():
    frame = read_frame(PLAIN, 0, max_body=LIMIT)
    assert isinstance(frame, Frame)
    assert (frame.route, frame.plain) == ((b"POST", b"/rpc"), True)
    assert PLAIN[frame.body_start : frame.end] == b"{}"
    assert frame.end == len(PLAIN)


def test_pipelined_requests_are_framed_one_after_another():
    second = request("GET /healthz HTTP/1.1\nHost: gw\nX-Request-ID: abc\n")
    data = PLAIN + second
    first = read_frame(data, 0, max_body=LIMIT)
    assert isinstance(first, Frame)
    following = read_frame(data, first.end, max_body=LIMIT)
    assert isinstance(following, Frame)
    assert (following.route[1], following.request_id, following.end) == (
        b"/healthz",
        b"abc",
        len(data),
    )


def test_a_request_not_all_here_waits_for_the_rest():
    for cut in range(1, PLAIN.index(b"\r\n\r\n") + 4):
        assert read_frame(PLAIN[:cut], 0, max_body=LIMIT) is None
    frame = read_frame(PLAIN[:-1], 0, max_body=LIMIT)  # the head is here, not the body
    assert isinstance(frame, Frame)
    assert frame.end > len(PLAIN) - 1


@pytest.mark.parametrize(
    "head",
    [
        "POST /rpc HTTP/1.1\nHost: gw\nTransfer-Encoding: chunked\n",
        "POST /rpc HTTP/1.1\nHost: gw\nContent-Length: 2\nTransfer-Encoding: chunked\n",
        "POST /rpc HTTP/1.1\nHost: gw\nContent-Length: 2\nContent-Length: 3\n",
        "POST /rpc HTTP/1.1\nHost: gw\nContent-Length: +2\n",
        "POST /rpc HTTP/1.1\nHost: gw\nContent-Length: 2, 2\n",
        "POST /rpc HTTP/1.1\nHost: gw\nContent-Length: 0x2\n",
        "POST /rpc HTTP/1.1\nHost: gw\nContent-Length : 2\n",
        "POST /rpc HTTP/1.1\nHost: gw\n Content-Length: 2\n",
        "POST /rpc HTTP/1.1\nHost: gw\nX-Folded: a\n b\n",
        "POST /rpc HTTP/1.1\nHost: gw\nConnection: close\n",
        "GET /rpc HTTP/1.1\nHost: gw\nUpgrade: websocket\n",
        "POST /rpc HTTP/1.1\nHost: gw\nExpect: 100-continue\n",
        "POST /rpc HTTP/1.0\nHost: gw\n",
        "CONNECT gw:443 HTTP/1.1\nHost: gw\n",
        "POST rpc HTTP/1.1\nHost: gw\n",
        "POST  /rpc HTTP/1.1\nHost: gw\n",
        "POST /rpc HTTP/1.1\nHost: g\u00e9\n",
        "POST /rpc HTTP/1.1\nNo colon here\n",
    ],
)
def test_anything_outside_the_subset_is_left_to_aiohttp(head):
    assert read_frame(request(head), 0, max_body=LIMIT) is UNFRAMED


def test_bare_line_feeds_and_carriage_returns_are_not_framed():
    lf = (
        b"POST /rpc HTTP/1.1\r\nHost: gw\nTransfer-Encoding: chunked\r\nContent-Length: 2\r\n\r\n{}"
    )
    cr = b"POST /rpc HTTP/1.1\r\nHost: gw\rX: y\r\nContent-Length: 2\r\n\r\n{}"
    assert read_frame(lf, 0, max_body=LIMIT) is UNFRAMED
    assert read_frame(cr, 0, max_body=LIMIT) is UNFRAMED


def test_a_body_over_the_limit_or_a_head_too_long_is_left_to_aiohttp():
    big = request("POST /rpc HTTP/1.1\nHost: gw\nContent-Length: 1025\n")
    assert read_frame(big, 0, max_body=1024) is UNFRAMED
    endless = b"POST /rpc HTTP/1.1\r\nHost: gw\r\nX-Pad: " + b"a" * MAX_HEAD_BYTES
    assert read_frame(endless, 0, max_body=LIMIT) is UNFRAMED


@pytest.mark.parametrize(
    "extra",
    [
        "Authorization: Bearer x\nAuthorization: Bearer y\n",
        "Cookie: gateway_session=x\n",
        "Origin: https://app.example\n",
        "traceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\n",
        "Content-Encoding: gzip\n",
        "X-Request-ID: one\nX-Request-ID: two\n",
        "Host: second\n",
        "Content-Type: a\nContent-Type: b\n",
        "X-Forwarded-For: 1.2.3.4\nX-Forwarded-For: 5.6.7.8\n",
    ],
)
def test_a_request_with_other_headers_is_framed_but_not_plain(extra):
    frame = read_frame(request(f"POST /rpc HTTP/1.1\nHost: gw\n{extra}"), 0, max_body=LIMIT)
    assert isinstance(frame, Frame)
    assert not frame.plain


def test_authorization_is_read_for_the_answer_to_resolve():
    frame = read_frame(
        request("POST /rpc HTTP/1.1\nHost: gw\nAuthorization:  Bearer abc \n"), 0, max_body=LIMIT
    )
    assert isinstance(frame, Frame)
    assert frame.plain
    assert frame.authorization == b"Bearer abc"


def test_a_request_without_host_is_not_plain():
    frame = read_frame(request("POST /rpc HTTP/1.1\nContent-Length: 0\n"), 0, max_body=LIMIT)
    assert isinstance(frame, Frame)
    assert not frame.plain


_names = st.sampled_from(["Accept", "Accept-Language", "X-Custom", "Authorization", "Origin"])
_values = st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=40)
_requests = st.tuples(
    st.sampled_from(["GET", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"]),
    st.sampled_from(["/rpc", "/healthz", "/records?x=1", "/a/b"]),
    st.lists(st.tuples(_names, _values), max_size=6),
    st.binary(max_size=300),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(_requests, min_size=1, max_size=5), st.integers(min_value=1, max_value=97))
def test_frames_end_where_aiohttps_parser_ends_each_message(requests, chunk):
    """Pipelined requests in the subset: the framer and aiohttp's parser (fed the same bytes
    in chunks) agree on every method, path and body."""
    data = b"".join(
        f"{method} {path} HTTP/1.1\r\nHost: gw\r\n".encode()
        + b"".join(f"{name}: {value}\r\n".encode() for name, value in headers)
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body
        for method, path, headers, body in requests
    )
    framed = []
    start = 0
    while start < len(data):
        frame = read_frame(data, start, max_body=LIMIT)
        assert isinstance(frame, Frame)
        framed.append(
            (frame.route[0].decode(), frame.route[1].decode(), data[frame.body_start : frame.end])
        )
        start = frame.end
    assert framed == asyncio.run(_parsed(data, chunk))


async def _parsed(data: bytes, chunk: int) -> list[tuple[str, str, bytes]]:
    loop = asyncio.get_running_loop()
    parser = HttpRequestParser(BaseProtocol(loop), loop, 1 << 16, max_line_size=8190)
    messages = []
    for offset in range(0, len(data), chunk):
        found, _, _ = parser.feed_data(data[offset : offset + chunk])
        messages.extend(found)
    return [
        (message.method, message.path, payload.read_nowait(-1)) for message, payload in messages
    ]


def test_a_connections_repeated_head_is_framed_as_the_first_was():
    framer = Framer(LIMIT)
    data = PLAIN + PLAIN
    first = framer.read(data, 0)
    again = framer.read(data, len(PLAIN))
    assert isinstance(first, Frame)
    assert isinstance(again, Frame)
    assert (again.route, again.plain, again.end - again.body_start) == (
        first.route,
        first.plain,
        first.end - first.body_start,
    )
    assert again.end == len(data)
    longer = request("POST /rpc HTTP/1.1\nHost: gw\nContent-Length: 3\n", b"{} ")
    assert framer.read(longer, 0).end == len(longer)  # type: ignore[union-attr]
    chunked = request("POST /rpc HTTP/1.1\nHost: gw\nTransfer-Encoding: chunked\n")
    assert framer.read(chunked, 0) is UNFRAMED
    assert framer.read(PLAIN, 0).end == len(PLAIN)  # type: ignore[union-attr]
