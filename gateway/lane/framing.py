"""A strict HTTP/1.1 request framer: where each request in a connection's bytes ends.

The lane answers some requests itself and hands every other one to aiohttp's parser, so it
must agree with that parser on where each message ends, byte for byte: a disagreement would
let one request smuggle another. It therefore accepts only a narrow, unambiguous subset:

- a request line ``METHOD SP /path SP HTTP/1.1`` in printable ASCII;
- lines ended by CRLF only (no bare CR or LF, no folded lines), header names that are
  tokens, header values of visible ASCII, space and tab;
- at most one ``Content-Length`` of plain digits, within the body limit;
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
_REQUEST_LINE = re.compile(rb"(GET|HEAD|POST|PUT|DELETE|OPTIONS|PATCH) (/[!-~]*) HTTP/1\.1")
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_PRINTABLE_HEAD = re.compile(rb"[\t\r\n\x20-\x7e]*")
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
# Headers a lane answer may ignore or reads itself; any other one sends the request to
# aiohttp (Authorization, Cookie, Origin, traceparent, Content-Encoding, …), and so does a
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
    }
)

# Plain headers a plain request has at most once (aiohttp's singletons, and the two the lane
# reads).
_ONCE: Final = frozenset(
    {b"host", b"content-type", b"user-agent", b"x-request-id", b"x-forwarded-for"}
)


@dataclass(frozen=True, slots=True)
class Frame:
    """One whole request head: its method and path, where its body is, the headers the lane
    reads, and whether the lane may answer it at all (only plain headers)."""

    method: bytes
    path: bytes
    body_start: int
    end: int
    plain: bool
    request_id: bytes | None
    forwarded_for: bytes | None


class _Unframed:
    """Bytes outside the subset: aiohttp's parser decides what they are."""


UNFRAMED: Final = _Unframed()


def read_frame(data: bytes, start: int, *, max_body: int) -> Frame | _Unframed | None:
    """The request starting at ``data[start]``; None when its head has not all arrived."""
    head_end = data.find(_END_OF_HEAD, start, start + MAX_HEAD_BYTES + 4)
    if head_end < 0:
        return None if len(data) - start <= MAX_HEAD_BYTES else UNFRAMED
    head = data[start:head_end]
    crlf = head.count(b"\r\n")
    if head.count(b"\r") != crlf or head.count(b"\n") != crlf:
        return UNFRAMED
    if _PRINTABLE_HEAD.fullmatch(head) is None:
        return UNFRAMED
    lines = head.split(b"\r\n")
    line = _REQUEST_LINE.fullmatch(lines[0])
    headers = _Headers()
    if line is None or not headers.read(lines[1:], max_body):
        return UNFRAMED
    body_start = head_end + 4
    return Frame(
        line.group(1),
        line.group(2),
        body_start,
        body_start + headers.length,
        headers.plain,
        headers.request_id,
        headers.forwarded_for,
    )


class _Headers:
    """What a head's header lines say about framing and about the lane."""

    __slots__ = ("_plain", "_seen", "_seen_length", "forwarded_for", "length", "request_id")

    def __init__(self) -> None:
        self.length = 0
        self._seen_length = False
        self._plain = True
        self._seen: set[bytes] = set()
        self.request_id: bytes | None = None
        self.forwarded_for: bytes | None = None

    def read(self, lines: list[bytes], max_body: int) -> bool:
        """False for anything outside the subset."""
        for header in lines:
            name, colon, value = header.partition(b":")
            if not colon or _TOKEN.fullmatch(name) is None:
                return False
            lowered = name.lower()
            if lowered == b"content-length":
                if not self._content_length(value.strip(b" \t"), max_body):
                    return False
            elif lowered in _FRAMING:
                return False
            elif lowered not in _PLAIN:
                self._plain = False
            elif lowered in _ONCE:
                self._once(lowered, value)
        return True

    def _once(self, lowered: bytes, value: bytes) -> None:
        if lowered in self._seen:  # aiohttp refuses most of them twice; the lane all
            self._plain = False
        self._seen.add(lowered)
        if lowered == b"x-request-id":
            self.request_id = value.strip(b" \t")
        elif lowered == b"x-forwarded-for":
            self.forwarded_for = value.strip(b" \t")

    @property
    def plain(self) -> bool:
        """Only headers the lane may ignore or reads, and the one Host aiohttp requires."""
        return self._plain and b"host" in self._seen

    def _content_length(self, digits: bytes, max_body: int) -> bool:
        if self._seen_length or not digits.isdigit() or len(digits) > 15:
            return False
        self._seen_length = True
        self.length = int(digits)
        return self.length <= max_body  # over it: aiohttp answers 413
