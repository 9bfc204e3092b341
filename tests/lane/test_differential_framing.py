"""The same bytes to the gateway with the fast path on and off: the same responses, in the
same order, and the same connection closes, for hundreds of hostile framings.

A disagreement between the lane's framer and aiohttp's parser on where a request ends
would let one request smuggle another; a framing aiohttp refuses that the lane accepted
would serve what aiohttp closes on. Each case is one connection's bytes: a request the
lane answers, a hostile one, and what a client pipelines behind it, then a last request
with ``Connection: close`` so that every connection ends.
"""

from __future__ import annotations

import asyncio
import itertools
import json

import pytest

from gateway.app import create_app
from tests.helpers.lane import LaneTestServer, started_servers

pytestmark = pytest.mark.integration

CHAIN_ID = json.dumps({"jsonrpc": "2.0", "id": 7, "method": "eth_chainId", "params": []})
BALANCE = json.dumps(
    {"jsonrpc": "2.0", "id": 8, "method": "eth_getBalance", "params": ["0x" + "11" * 20, "latest"]}
)


def head(lines: list[str], *, end: str = "\r\n") -> bytes:
    """Characters up to U+00FF as their one byte each; others (a digit of another script)
    as UTF-8."""
    text = end.join(lines) + end + end
    try:
        return text.encode("latin-1")
    except UnicodeEncodeError:
        return text.encode("utf-8")


def rpc(body: str = CHAIN_ID, *, extra: tuple[str, ...] = (), length: str | None = None) -> bytes:
    lines = ["POST /rpc HTTP/1.1", "Host: gateway", "Content-Type: application/json"]
    lines += list(extra)
    if length is not False:
        lines.append(f"Content-Length: {length if length is not None else len(body)}")
    return head(lines) + body.encode()


VARYING = {"Date", "X-Request-ID", "Server-Timing"}
LAST = b"GET /healthz HTTP/1.1\r\nHost: gateway\r\nConnection: close\r\n\r\n"
HEALTH = b"GET /healthz HTTP/1.1\r\nHost: gateway\r\n\r\n"


def chunked(body: str) -> bytes:
    return f"{len(body):x}\r\n{body}\r\n0\r\n\r\n".encode()


def hostile() -> dict[str, bytes]:
    """Requests that try to confuse a framer, by name."""
    cases: dict[str, bytes] = {}
    body = CHAIN_ID
    # CL.TE and TE.CL, and Transfer-Encoding obfuscations.
    for te in [
        "Transfer-Encoding: chunked",
        "Transfer-Encoding: CHUNKED",
        "Transfer-Encoding : chunked",
        "Transfer-Encoding:\tchunked",
        "Transfer-Encoding: xchunked",
        "Transfer-Encoding: chunked, identity",
        "Transfer-Encoding: identity, chunked",
        "Transfer-Encoding: chunked\r\nTransfer-Encoding: identity",
        " Transfer-Encoding: chunked",
        "X-Padding: a\r\n Transfer-Encoding: chunked",
        "Transfer-Encoding\x00: chunked",
        "Transfer-Encoding: \x0bchunked",
    ]:
        cases[f"CL.TE {te!r}"] = rpc(extra=(te,), length=str(len(chunked(body)))) + b""
        cases[f"CL.TE short {te!r}"] = head(
            ["POST /rpc HTTP/1.1", "Host: gateway", "Content-Length: 4", te]
        ) + chunked(body)
        cases[f"TE.CL {te!r}"] = head(
            ["POST /rpc HTTP/1.1", "Host: gateway", te, f"Content-Length: {len(body)}"]
        ) + chunked(body)
        cases[f"TE only {te!r}"] = head(["POST /rpc HTTP/1.1", "Host: gateway", te]) + chunked(body)
    # Lengths: duplicated, signed, spaced, hex, huge, wrong.
    for length in [
        "+84",
        "-1",
        " 84",
        "84 ",
        "0x54",
        "84, 84",
        "84,84",
        "99999999999999999999",
        "1e2",
        "٨٤",
        "",
        "0",
        str(len(body) - 5),
    ]:
        cases[f"CL {length!r}"] = rpc(length=length)
    for first, second in [(len(body), len(body)), (len(body), 0), (0, len(body)), (len(body), 3)]:
        cases[f"two CL {first},{second}"] = rpc(
            extra=(f"Content-Length: {first}",), length=str(second)
        )
    # Line endings and folds.
    cases["bare LF"] = (
        head(["POST /rpc HTTP/1.1", "Host: gateway", f"Content-Length: {len(body)}"], end="\n")
        + body.encode()
    )
    cases["bare CR"] = (
        head(["POST /rpc HTTP/1.1", "Host: gateway", f"Content-Length: {len(body)}"], end="\r")
        + body.encode()
    )
    cases["LF inside head"] = rpc().replace(b"Host: gateway\r\n", b"Host: gateway\n", 1)
    cases["CR inside head"] = rpc().replace(b"Host: gateway\r\n", b"Host: gateway\r", 1)
    cases["obs-fold in a value"] = rpc(extra=("X-Note: a", " folded"))
    cases["obs-fold in the length"] = (
        head(["POST /rpc HTTP/1.1", "Host: gateway", "Content-Length: 8", f" {len(body)}"])
        + body.encode()
    )
    cases["space before colon"] = rpc(extra=("Content-Type : text/plain",))
    # NUL, control and high bytes.
    for name, raw in [
        ("NUL in a value", "X-Note: a\x00b"),
        ("NUL in a name", "X-No\x00te: a"),
        ("DEL in a value", "X-Note: a\x7fb"),
        ("high byte in a value", "X-Note: caf\xe9"),
        ("high byte in a name", "X-N\xf6te: a"),
        ("tab in a value", "X-Note: a\tb"),
        ("vertical tab", "X-Note: a\x0bb"),
        ("form feed", "X-Note: a\x0cb"),
    ]:
        cases[name] = rpc(extra=(raw,))
    cases["high byte in the path"] = rpc().replace(b"POST /rpc ", b"POST /rpc\xe9 ", 1)
    cases["NUL in the path"] = rpc().replace(b"POST /rpc ", b"POST /r\x00pc ", 1)
    cases["absolute URI"] = rpc().replace(b"POST /rpc ", b"POST http://gateway/rpc ", 1)
    cases["HTTP/1.0"] = rpc().replace(b"HTTP/1.1", b"HTTP/1.0", 1)
    cases["HTTP/1.2"] = rpc().replace(b"HTTP/1.1", b"HTTP/1.2", 1)
    cases["lower-case method"] = rpc().replace(b"POST ", b"post ", 1)
    cases["two spaces"] = rpc().replace(b"POST /rpc", b"POST  /rpc", 1)
    cases["no Host"] = rpc().replace(b"Host: gateway\r\n", b"", 1)
    cases["two Hosts"] = rpc(extra=("Host: other",))
    cases["empty Host"] = rpc().replace(b"Host: gateway", b"Host:", 1)
    # More headers than aiohttp takes, and over-long lines and heads.
    for count in (100, 126, 127, 128, 129, 130, 200):
        cases[f"{count} headers"] = rpc(extra=tuple(f"X-H{i}: v" for i in range(count - 4)))
    for size in (8000, 8190, 8191, 8200, 9000, 20000):
        cases[f"value of {size}"] = rpc(extra=("X-Big: " + "a" * size,))
        cases[f"path of {size}"] = rpc().replace(b"POST /rpc ", f"POST /rpc?{'a' * size} ".encode())
    cases["head of 60 KiB"] = rpc(extra=tuple(f"X-H{i}: {'b' * 900}" for i in range(70)))
    # Upgrades, expectations and connection options.
    for extra in [
        "Connection: close",
        "Connection: keep-alive",
        "Connection: Upgrade\r\nUpgrade: websocket",
        "Upgrade: h2c",
        "Expect: 100-continue",
        "TE: trailers",
        "Keep-Alive: timeout=5",
        "Content-Encoding: gzip",
        "Content-Encoding: deflate",
    ]:
        cases[extra] = rpc(extra=(extra,))
    # Sessions: the lane resolves them now (none is valid on this gateway).
    for extra in [
        "Authorization: Bearer junk",
        "Authorization: Basic dXNlcg==",
        "Authorization:",
        "Authorization: Bearer a\r\nAuthorization: Bearer b",
        "authorization: bearer   spaced  ",
    ]:
        cases[extra] = rpc(extra=(extra,))
    # Bodies of the wrong size and shape.
    cases["body longer than its length"] = rpc(length=str(len(body) - 1)) + b"}"
    cases["empty body"] = rpc("")
    cases["not JSON"] = rpc("{not json")
    cases["batch"] = rpc(f"[{CHAIN_ID},{BALANCE}]")
    cases["empty batch"] = rpc("[]")
    cases["a miss"] = rpc(BALANCE)
    cases["GET /rpc"] = b"GET /rpc HTTP/1.1\r\nHost: gateway\r\n\r\n"
    cases["a probe"] = HEALTH
    return cases


def connections() -> dict[str, list[bytes]]:
    """Each case: the pieces one connection sends (each written on its own)."""
    lane = rpc()
    out: dict[str, list[bytes]] = {}
    for (name, raw), (order, layout) in itertools.product(
        hostile().items(),
        [
            ("alone", lambda r: [r + LAST]),
            ("after a lane answer", lambda r: [lane + r + lane + LAST]),
            ("after a miss, then a probe", lambda r: [rpc(BALANCE) + r + HEALTH + LAST]),
        ],
    ):
        out[f"{name} / {order}"] = layout(raw)
    every = hostile()
    for name in ("CL.TE 'Transfer-Encoding: chunked'", "two CL", "bare LF", "129 headers"):
        raw = next(raw for case, raw in every.items() if case.startswith(name))
        whole = lane + raw + lane + LAST
        out[f"{name} / dribbled a byte at a time"] = [bytes([b]) for b in whole]
    return out


async def _exchange(server: LaneTestServer, pieces: list[bytes]) -> tuple[list, bool]:
    """Every response the server sent (status and body, and headers but Date and the
    request id), and whether it closed the connection."""
    reader, writer = await asyncio.open_connection(server.host, server.port)
    try:
        try:
            for piece in pieces:
                writer.write(piece)
                if len(pieces) > 1:
                    await writer.drain()
                    await asyncio.sleep(0)
            await writer.drain()
        except ConnectionError:  # the server closed while bytes were still coming
            pass
        data = b""
        closed = False
        try:
            async with asyncio.timeout(3):
                while chunk := await reader.read(65536):
                    data += chunk
                closed = True
        except TimeoutError:
            pass
        except ConnectionResetError:
            closed = True
    finally:
        writer.close()
    return _responses(data), closed


def _responses(data: bytes) -> list:
    replies = []
    while data:
        end = data.find(b"\r\n\r\n")
        if end < 0:
            replies.append(("partial", data))
            break
        status, *lines = data[:end].decode("latin-1").split("\r\n")
        headers = dict(line.split(": ", 1) for line in lines if ": " in line)
        length = int(headers.get("Content-Length", 0))
        body = data[end + 4 : end + 4 + length]
        data = data[end + 4 + length :]
        # Values that differ between any two answers (times, ids) or between two servers
        # whose caches fill in another order: their names are compared, not their values.
        kept = sorted(
            (k, "" if k in VARYING or k.startswith("X-Gateway-") else v) for k, v in headers.items()
        )
        replies.append((status, kept, _without_request_id(body)))
    return replies


def _without_request_id(body: bytes) -> bytes:
    try:
        decoded = json.loads(body)
    except ValueError:
        return body
    if isinstance(decoded, dict) and isinstance(decoded.get("error"), dict):
        decoded["error"].pop("requestId", None)
    return json.dumps(decoded, sort_keys=True).encode()


async def test_the_fast_path_answers_every_framing_as_aiohttp_does(anvil, make_settings):
    cases = connections()
    assert len(cases) >= 300
    env = {
        "GATEWAY_CHAIN_ID": "31337",
        "GATEWAY_RPC__ANONYMOUS__RATE_PER_S": "1000000",
        "GATEWAY_RPC__ANONYMOUS__BURST": "1000000",
    }
    async with started_servers() as start:
        servers = {}
        for lane in (True, False):
            settings = make_settings(
                upstreams=[anvil.url], GATEWAY_SERVER__LANE=str(lane).lower(), **env
            )
            servers[lane] = await start(create_app(settings))
        slots = asyncio.Semaphore(16)

        async def both(pieces):
            async with slots:
                return await asyncio.gather(
                    *(_exchange(servers[lane], pieces) for lane in (True, False))
                )

        outcomes = await asyncio.gather(*(both(pieces) for pieces in cases.values()))
    differ = {
        name: {"fast path": fast, "aiohttp": plain}
        for name, (fast, plain) in zip(cases, outcomes, strict=True)
        if fast != plain
    }
    assert differ == {}, json.dumps(differ, indent=1, default=repr)[:6000]
    closed = sum(1 for fast, _ in outcomes if fast[1])
    assert closed == len(cases)  # every connection ended (Connection: close, or refused)
