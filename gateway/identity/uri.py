"""RFC 3986 grammar as compiled regular expressions (ASCII only, no backtracking traps).

Every alternation below has branches that start with disjoint characters, so matching is
linear in the input length.
"""

from __future__ import annotations

import re

UNRESERVED = r"A-Za-z0-9\-._~"
SUB_DELIMS = r"!$&'()*+,;="
PCT_ENCODED = r"%[0-9A-Fa-f]{2}"
PCHAR = rf"(?:[{UNRESERVED}{SUB_DELIMS}:@]|{PCT_ENCODED})"

SCHEME = r"[A-Za-z][A-Za-z0-9+\-.]*"
USERINFO = rf"(?:[{UNRESERVED}{SUB_DELIMS}:]|{PCT_ENCODED})*"
DEC_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9][0-9]|[0-9])"
IPV4_ADDRESS = rf"{DEC_OCTET}(?:\.{DEC_OCTET}){{3}}"
_H16 = r"[0-9A-Fa-f]{1,4}"
_LS32 = rf"(?:{_H16}:{_H16}|{IPV4_ADDRESS})"
IPV6_ADDRESS = (
    "(?:"
    + "|".join(
        [
            rf"(?:{_H16}:){{6}}{_LS32}",
            rf"::(?:{_H16}:){{5}}{_LS32}",
            rf"(?:{_H16})?::(?:{_H16}:){{4}}{_LS32}",
            rf"(?:(?:{_H16}:){{0,1}}{_H16})?::(?:{_H16}:){{3}}{_LS32}",
            rf"(?:(?:{_H16}:){{0,2}}{_H16})?::(?:{_H16}:){{2}}{_LS32}",
            rf"(?:(?:{_H16}:){{0,3}}{_H16})?::{_H16}:{_LS32}",
            rf"(?:(?:{_H16}:){{0,4}}{_H16})?::{_LS32}",
            rf"(?:(?:{_H16}:){{0,5}}{_H16})?::{_H16}",
            rf"(?:(?:{_H16}:){{0,6}}{_H16})?::",
        ]
    )
    + ")"
)
IPV_FUTURE = rf"[vV][0-9A-Fa-f]+\.[{UNRESERVED}{SUB_DELIMS}:]+"
IP_LITERAL = rf"\[(?:{IPV6_ADDRESS}|{IPV_FUTURE})\]"
REG_NAME = rf"(?:[{UNRESERVED}{SUB_DELIMS}]|{PCT_ENCODED})*"
HOST = rf"(?:{IP_LITERAL}|{REG_NAME})"  # an IPv4 address is also a reg-name
PORT = r"[0-9]*"
AUTHORITY = rf"(?:{USERINFO}@)?{HOST}(?::{PORT})?"

_SEGMENT = rf"{PCHAR}*"
_SEGMENT_NZ = rf"{PCHAR}+"
PATH_ABEMPTY = rf"(?:/{_SEGMENT})*"
PATH_ABSOLUTE = rf"/(?:{_SEGMENT_NZ}(?:/{_SEGMENT})*)?"
PATH_ROOTLESS = rf"{_SEGMENT_NZ}(?:/{_SEGMENT})*"
HIER_PART = rf"(?://{AUTHORITY}{PATH_ABEMPTY}|{PATH_ABSOLUTE}|{PATH_ROOTLESS}|)"
QUERY = rf"(?:{PCHAR}|[/?])*"
URI = rf"{SCHEME}:{HIER_PART}(?:\?{QUERY})?(?:#{QUERY})?"

URI_RE = re.compile(URI, re.ASCII)
AUTHORITY_RE = re.compile(
    rf"(?:(?P<userinfo>{USERINFO})@)?(?P<host>{HOST})(?::(?P<port>{PORT}))?", re.ASCII
)
_URI_PARTS_RE = re.compile(rf"(?P<scheme>{SCHEME}):(?://(?P<authority>{AUTHORITY}))?", re.ASCII)
_DEFAULT_PORTS = {"http": "80", "https": "443", "ws": "80", "wss": "443"}


def is_uri(text: str) -> bool:
    return URI_RE.fullmatch(text) is not None


def host_port(authority: str, scheme: str | None = None) -> str | None:
    """``user@Host:443`` -> ``host:443`` (lower-cased host, userinfo dropped, the scheme's
    default port dropped); None if not an authority."""
    match = AUTHORITY_RE.fullmatch(authority)
    if match is None:
        return None
    host = match.group("host").lower()
    port = match.group("port")
    if not port or (scheme is not None and _DEFAULT_PORTS.get(scheme.lower()) == port):
        return host
    return f"{host}:{port}"


def uri_origin(uri: str) -> tuple[str, str] | None:
    """``https://app.example:443/login`` -> (``https``, ``app.example``); None without an
    authority."""
    match = _URI_PARTS_RE.match(uri)
    if match is None or match.group("authority") is None:
        return None
    scheme = match.group("scheme").lower()
    hp = host_port(match.group("authority"), scheme)
    return None if hp is None else (scheme, hp)
