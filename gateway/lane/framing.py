"""A strict HTTP/1.1 request framer: where each request in a connection's bytes ends.

The lane answers some requests itself and hands every other one to aiohttp's parser, so it
must agree with that parser on where each message ends, byte for byte: a disagreement would
let one request smuggle another. It therefore accepts only a narrow, unambiguous subset:

- a request line ``METHOD SP /path SP HTTP/1.1`` in printable ASCII;
- lines ended by CRLF only (no bare CR or LF, no folded lines), header names that are
  tokens, header values of visible ASCII, space and tab;
- at most one ``Content-Length`` of plain digits, within the body limit;
- the whole head within aiohttp's line limit, and fewer fields than aiohttp's
  ``max_headers`` (aiohttp answers 400 "Too many headers" past it);
- none of the headers that change how a message is framed or what follows it
  (``Transfer-Encoding``, ``Connection``, ``Upgrade``, ``Expect``, ``TE``, …).

Anything else is ``UNFRAMED``: the lane then gives the connection to aiohttp for good.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

MAX_HEAD_BYTES: Final = 8190  # aiohttp's own line and field limit
_END_OF_HEAD = b"\r\n\r\n"
# A whole head in the subset: the request line, then header lines of a token name and a
# value of visible ASCII, space and tab, every line ended by CRLF (no bare CR or LF, no fold).
_HEAD = re.compile(
    rb"(GET|HEAD|POST|PUT|DELETE|OPTIONS|PATCH) (/[!-~]*) HTTP/1\.1\r\n"
    rb"((?:[!#$%&'*+\-.^_`|~0-9A-Za-z]+:[\t\x20-\x7e]*\r\n)*)\r\n"
)
# One header line of such a head: its name and its value without the spaces around it.
_FIELD = re.compile(rb"([!#$%&'*+\-.^_`|~0-9A-Za-z]+):[\t ]*([\t\x20-\x7e]*?)[\t ]*\r\n")
# Headers that change the framing of this message or of the connection after it.
_FRAMING: Final = frozenset(
    {
        b"transfer-encoding",
        b"connection",
        b"upgrade",
        b"expect",
        b"te",
        b"trailer",
        b"keep-alive",
        b"proxy-connection",
        b"http2-settings",
    }
)
# Headers a lane answer may ignore or reads itself (Authorization: the JSON-RPC answerer
# resolves its session, the others hand such a request to aiohttp); any other one sends the
# request to aiohttp (Cookie, Origin, traceparent, Content-Encoding, …), and so does a
# request without exactly one Host (aiohttp answers 400).
_PLAIN: Final = frozenset(
    {
        b"host",
        b"content-type",
        b"content-length",
        b"accept",
        b"accept-encoding",
        b"accept-language",
        b"user-agent",
        b"x-request-id",
        b"x-forwarded-for",
        b"authorization",
    }
)

# Plain headers a plain request has at most once (aiohttp's singletons, and the two the lane
# reads).
_ONCE: Final = frozenset(
    {
        b"host",
        b"content-type",
        b"user-agent",
        b"x-request-id",
        b"x-forwarded-for",
        b"authorization",
    }
)


@dataclass(slots=True)  # not frozen: a frozen dataclass's __init__ costs ~3x
class Frame:
    """One whole request head: its method and path, where its body is, the headers the lane
    reads, and whether the lane may answer it at all (only plain headers)."""

    route: tuple[bytes, bytes]  # method and path
    body_start: int
    end: int
    plain: bool
    request_id: bytes | None
    forwarded_for: bytes | None
    content_type: bytes | None
    authorization: bytes | None


class _Unframed:
    """Bytes outside the subset: aiohttp's parser decides what they are."""


UNFRAMED: Final = _Unframed()


def read_frame(
    data: bytes, start: int, *, max_body: int, max_headers: int = 128
) -> Frame | _Unframed | None:
    """The request starting at ``data[start]``; None when its head has not all arrived."""
    return Framer(max_body, max_headers=max_headers).read(data, start)


class Framer:
    """Frames one connection's requests. A client on a kept-alive connection mostly sends
    the same head again (same headers, same length): a head equal to the last one is not
    parsed again (a byte comparison instead of two regular expressions)."""

    __slots__ = ("_last", "_last_head", "_max_body", "_max_headers")

    def __init__(self, max_body: int, *, max_headers: int = 128) -> None:
        self._max_body = max_body
        self._max_headers = max_headers
        self._last_head = b""
        self._last: _Head | None = None

    def read(self, data: bytes, start: int) -> Frame | _Unframed | None:
        """The request starting at ``data[start]``; None when its head has not all arrived."""
        head_end = data.find(_END_OF_HEAD, start, start + MAX_HEAD_BYTES + 4)
        if head_end < 0:
            return None if len(data) - start <= MAX_HEAD_BYTES else UNFRAMED
        body_start = head_end + 4
        raw = data[start:body_start]
        if raw == self._last_head and self._last is not None:
            head = self._last
        else:
            parsed = _parse_head(raw, self._max_body, self._max_headers)
            if parsed is UNFRAMED:
                return UNFRAMED
            assert isinstance(parsed, _Head)  # noqa: S101  # for the type checker
            head = self._last = parsed
            self._last_head = raw
        return Frame(
            head.route,
            body_start,
            body_start + head.length,
            head.plain,
            head.request_id,
            head.forwarded_for,
            head.content_type,
            head.authorization,
        )


@dataclass(slots=True)
class _Head:
    route: tuple[bytes, bytes]
    length: int
    plain: bool
    request_id: bytes | None
    forwarded_for: bytes | None
    content_type: bytes | None
    authorization: bytes | None


def _parse_head(raw: bytes, max_body: int, max_headers: int) -> _Head | _Unframed:  # noqa: C901, PLR0912  # one pass over the headers
    head = _HEAD.fullmatch(raw)
    if head is None:
        return UNFRAMED
    fields = _FIELD.findall(head.group(3))
    if len(fields) >= max_headers:  # aiohttp's to judge (it refuses more than it takes)
        return UNFRAMED
    length = -1
    plain = True
    seen: set[bytes] = set()
    request_id = forwarded_for = content_type = authorization = None
    for name, value in fields:
        lowered = name.lower()
        if lowered in _ONCE:
            if lowered in seen:  # aiohttp refuses most of them twice; the lane all of them
                plain = False
            seen.add(lowered)
            if lowered == b"x-request-id":
                request_id = value
            elif lowered == b"x-forwarded-for":
                forwarded_for = value
            elif lowered == b"content-type":
                content_type = value
            elif lowered == b"authorization":
                authorization = value
        elif lowered == b"content-length":
            if length >= 0 or not value.isdigit() or len(value) > 15:
                return UNFRAMED
            length = int(value)
            if length > max_body:
                return UNFRAMED  # aiohttp answers 413
        elif lowered in _FRAMING:
            return UNFRAMED
        elif lowered not in _PLAIN:
            plain = False
    return _Head(
        (head.group(1), head.group(2)),
        max(length, 0),
        plain and b"host" in seen,  # aiohttp answers 400 without exactly one
        request_id,
        forwarded_for,
        content_type,
        authorization,
    )
