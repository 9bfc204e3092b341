"""Sign-In with Ethereum (EIP-4361): parse, format and verify messages, per its ABNF exactly.

A hand-written line parser with one compiled regular expression per field: it accepts what
the ABNF accepts, rejects what it rejects, and says which line is wrong. ``to_text()``
gives back the parsed text byte for byte. ``verify_message`` checks an EOA's EIP-191
signature and the message's rules; contract wallets (EIP-1271 / EIP-6492) are checked by
``gateway.chain.wallets``, which reuses this module.
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import ClassVar

from gateway.chain import signatures
from gateway.chain.signatures import (  # re-exported: part of this module's public API
    SECP256K1_N,
    checksum_address,
    eip191_hash,
    recover_address,
)
from gateway.errors import GatewayError
from gateway.identity import uri as rfc3986

__all__ = [
    "SECP256K1_N",
    "SiweError",
    "SiweMessage",
    "checksum_address",
    "eip191_hash",
    "parse_message",
    "recover_address",
    "verify_message",
]

MAX_MESSAGE_BYTES = 16 * 1024
HEADER_SUFFIX = " wants you to sign in with your Ethereum account:"


# --- errors ------------------------------------------------------------------------------


class SiweError(GatewayError):
    """A sign-in message that is malformed or does not verify. ``outcome`` is the bounded
    label of ``gateway_auth_attempts_total``."""

    http_status = 401
    code = "siwe.invalid"
    outcome: ClassVar[str] = "invalid"
    default_message = "sign-in message rejected"


class MalformedMessage(SiweError):
    """The text is not an EIP-4361 message; ``line`` (1-based) says where."""

    http_status = 400
    code = "siwe.malformed"
    outcome = "malformed"

    def __init__(self, message: str, *, line: int | None = None, field_name: str = "") -> None:
        where = f"line {line}: " if line is not None else ""
        super().__init__(f"{where}{message}")
        self.line = line
        self.field_name = field_name


class InvalidHeader(MalformedMessage):
    code = "siwe.malformed.header"


class InvalidDomain(MalformedMessage):
    code = "siwe.malformed.domain"


class InvalidAddress(MalformedMessage):
    code = "siwe.malformed.address"


class InvalidStatement(MalformedMessage):
    code = "siwe.malformed.statement"


class InvalidURI(MalformedMessage):
    code = "siwe.malformed.uri"


class InvalidVersion(MalformedMessage):
    code = "siwe.malformed.version"


class InvalidChainId(MalformedMessage):
    code = "siwe.malformed.chain_id"


class InvalidNonce(MalformedMessage):
    code = "siwe.malformed.nonce"


class InvalidTimestamp(MalformedMessage):
    code = "siwe.malformed.timestamp"


class InvalidRequestId(MalformedMessage):
    code = "siwe.malformed.request_id"


class InvalidResource(MalformedMessage):
    code = "siwe.malformed.resource"


class UnexpectedLine(MalformedMessage):
    code = "siwe.malformed.structure"


class MalformedSignature(SiweError):
    http_status = 400
    code = "siwe.signature.malformed"
    outcome = "bad_signature"
    default_message = "signature must be 65 bytes (r, s, v) with a low s value"


class InvalidSignature(SiweError):
    code = "siwe.signature.invalid"
    outcome = "bad_signature"
    default_message = "signature does not match the message's address"


class DomainMismatch(SiweError):
    code = "siwe.domain.mismatch"
    outcome = "bad_domain"
    default_message = "message domain is not accepted here"


class OriginMismatch(SiweError):
    code = "siwe.domain.origin_mismatch"
    outcome = "bad_domain"
    default_message = "message domain does not match the request's Origin"


class URINotAllowed(SiweError):
    code = "siwe.uri.not_allowed"
    outcome = "bad_uri"
    default_message = "message URI is not on an accepted origin"


class ChainNotAllowed(SiweError):
    code = "siwe.chain.not_allowed"
    outcome = "chain_not_allowed"
    default_message = "message chain id is not accepted here"


class NonceMismatch(SiweError):
    code = "siwe.nonce.mismatch"
    outcome = "nonce_unknown"
    default_message = "message nonce is not the expected one"


class ExpiredMessage(SiweError):
    code = "siwe.expired"
    outcome = "expired"
    default_message = "message expiration time has passed"


class NotYetValid(SiweError):
    code = "siwe.not_yet_valid"
    outcome = "not_yet_valid"
    default_message = "message not-before time is in the future"


class IssuedInFuture(SiweError):
    code = "siwe.issued_in_future"
    outcome = "not_yet_valid"
    default_message = "message issued-at time is in the future"


# --- RFC 3339 ----------------------------------------------------------------------------

_DATE_TIME_RE = re.compile(
    r"(?P<year>[0-9]{4})-(?P<month>[0-9]{2})-(?P<day>[0-9]{2})[Tt]"
    r"(?P<hour>[0-9]{2}):(?P<minute>[0-9]{2}):(?P<second>[0-9]{2})(?P<frac>\.[0-9]+)?"
    r"(?P<offset>[Zz]|[+-][0-9]{2}:[0-9]{2})",
    re.ASCII,
)


def parse_rfc3339(text: str) -> datetime | None:
    """RFC 3339 ``date-time`` -> an aware datetime; None unless valid (ranges included).

    A leap second (``:60``) is accepted, as RFC 3339 allows, and read as ``:59.999999``.
    """
    match = _DATE_TIME_RE.fullmatch(text)
    if match is None:
        return None
    year, month, day = int(match["year"]), int(match["month"]), int(match["day"])
    hour, minute, second = int(match["hour"]), int(match["minute"]), int(match["second"])
    if not (1 <= month <= 12 and 1 <= day <= calendar.monthrange(year or 1, month)[1]):
        return None
    if year == 0 or hour > 23 or minute > 59 or second > 60:
        return None
    micro = int((match["frac"] or ".0")[1:7].ljust(6, "0"))
    if second == 60:
        second, micro = 59, 999_999
    offset = match["offset"]
    if offset in {"Z", "z"}:
        tz = UTC
    else:
        off_hour, off_minute = int(offset[1:3]), int(offset[4:6])
        if off_hour > 23 or off_minute > 59:
            return None
        delta = timedelta(hours=off_hour, minutes=off_minute)
        tz = timezone(-delta if offset[0] == "-" else delta)
    return datetime(year, month, day, hour, minute, second, micro, tzinfo=tz)


# --- the message -------------------------------------------------------------------------

_HEADER_RE = re.compile(
    rf"(?:(?P<scheme>{rfc3986.SCHEME})://)?(?P<domain>{rfc3986.AUTHORITY})"
    + re.escape(HEADER_SUFFIX),
    re.ASCII,
)
_ADDRESS_RE = re.compile(r"0x[0-9a-fA-F]{40}", re.ASCII)
_STATEMENT_RE = re.compile(rf"[{rfc3986.UNRESERVED}{rfc3986.SUB_DELIMS}:/?#\[\]@ ]+", re.ASCII)
_CHAIN_ID_RE = re.compile(r"[0-9]+", re.ASCII)
_NONCE_RE = re.compile(r"[A-Za-z0-9]{8,}", re.ASCII)
_REQUEST_ID_RE = re.compile(rf"{rfc3986.PCHAR}*", re.ASCII)

_URI_TAG = "URI: "
_VERSION_TAG = "Version: "
_CHAIN_TAG = "Chain ID: "
_NONCE_TAG = "Nonce: "
_ISSUED_TAG = "Issued At: "
_EXPIRATION_TAG = "Expiration Time: "
_NOT_BEFORE_TAG = "Not Before: "
_REQUEST_ID_TAG = "Request ID: "
_RESOURCES_TAG = "Resources:"
_RESOURCE_PREFIX = "- "


@dataclass(frozen=True, slots=True, kw_only=True)
class SiweMessage:
    """An EIP-4361 message. Timestamps keep their exact RFC 3339 text (so the message
    re-formats to the signed bytes); ``*_at``/``*_time`` properties give datetimes."""

    domain: str
    address: str
    uri: str
    version: str = "1"
    chain_id: int
    nonce: str
    issued_at: str
    statement: str | None = None
    expiration_time: str | None = None
    not_before: str | None = None
    request_id: str | None = None
    resources: tuple[str, ...] | None = None
    scheme: str | None = None
    # The chain id exactly as written (the ABNF allows leading zeros); "" means str(chain_id).
    chain_id_text: str = field(default="", repr=False, compare=False)

    def to_text(self) -> str:
        """The EIP-4361 text of this message (the bytes a wallet signs)."""
        header = f"{self.domain}{HEADER_SUFFIX}"
        if self.scheme is not None:
            header = f"{self.scheme}://{header}"
        chain = self.chain_id_text or str(self.chain_id)
        lines = [header, self.address, ""]
        if self.statement is not None:
            lines.append(self.statement)
        lines += [
            "",
            f"{_URI_TAG}{self.uri}",
            f"{_VERSION_TAG}{self.version}",
            f"{_CHAIN_TAG}{chain}",
            f"{_NONCE_TAG}{self.nonce}",
            f"{_ISSUED_TAG}{self.issued_at}",
        ]
        if self.expiration_time is not None:
            lines.append(f"{_EXPIRATION_TAG}{self.expiration_time}")
        if self.not_before is not None:
            lines.append(f"{_NOT_BEFORE_TAG}{self.not_before}")
        if self.request_id is not None:
            lines.append(f"{_REQUEST_ID_TAG}{self.request_id}")
        if self.resources is not None:
            lines.append(_RESOURCES_TAG)
            lines += [f"{_RESOURCE_PREFIX}{resource}" for resource in self.resources]
        return "\n".join(lines)

    @property
    def issued_at_datetime(self) -> datetime:
        return _checked_time(self.issued_at, "issued_at")

    @property
    def expiration_datetime(self) -> datetime | None:
        return (
            None
            if self.expiration_time is None
            else _checked_time(self.expiration_time, "expiration_time")
        )

    @property
    def not_before_datetime(self) -> datetime | None:
        return None if self.not_before is None else _checked_time(self.not_before, "not_before")


def _checked_time(text: str, name: str) -> datetime:
    parsed = parse_rfc3339(text)
    if parsed is None:
        raise InvalidTimestamp(f"{name} is not an RFC 3339 date-time", field_name=name)
    return parsed


class _Lines:
    """A cursor over the message's lines that names the line on every error."""

    def __init__(self, text: str) -> None:
        self.lines = text.split("\n")
        self.index = 0

    @property
    def number(self) -> int:
        return self.index + 1

    def peek(self) -> str | None:
        return self.lines[self.index] if self.index < len(self.lines) else None

    def take(self, what: str) -> str:
        line = self.peek()
        if line is None:
            raise UnexpectedLine(f"message ends where {what} was expected", line=self.number)
        self.index += 1
        return line

    def tagged(self, tag: str, error: type[MalformedMessage], what: str) -> str:
        line = self.take(f"'{tag.strip()}'")
        if not line.startswith(tag):
            raise error(f"expected '{tag}<{what}>', got {_preview(line)}", line=self.index)
        return line[len(tag) :]

    def optional(self, tag: str) -> str | None:
        line = self.peek()
        if line is not None and line.startswith(tag):
            self.index += 1
            return line[len(tag) :]
        return None


def _preview(line: str) -> str:
    return repr(line if len(line) <= 40 else line[:40] + "…")


def parse_message(text: str) -> SiweMessage:
    """Parse EIP-4361 text. Raises a ``MalformedMessage`` subclass naming the bad line."""
    if not isinstance(text, str):
        raise MalformedMessage("message must be text")
    if len(text) > MAX_MESSAGE_BYTES:
        raise MalformedMessage(f"message is longer than {MAX_MESSAGE_BYTES} characters")
    lines = _Lines(text)
    scheme, domain, address, statement = _parse_preamble(lines)
    uri, chain_text, nonce, issued_at = _parse_required_fields(lines)
    expiration_time, not_before, request_id, resources = _parse_optional_fields(lines)
    if (extra := lines.peek()) is not None:
        raise UnexpectedLine(f"unexpected line {_preview(extra)}", line=lines.number)
    return SiweMessage(
        scheme=scheme,
        domain=domain,
        address=address,
        statement=statement,
        uri=uri,
        chain_id=int(chain_text),
        chain_id_text="" if str(int(chain_text)) == chain_text else chain_text,
        nonce=nonce,
        issued_at=issued_at,
        expiration_time=expiration_time,
        not_before=not_before,
        request_id=request_id,
        resources=resources,
    )


def _parse_preamble(lines: _Lines) -> tuple[str | None, str, str, str | None]:
    """Header, address, and the optional statement between its blank lines."""
    header = _HEADER_RE.fullmatch(lines.take("the header"))
    if header is None:
        raise InvalidHeader(
            f"expected '[scheme://]domain{HEADER_SUFFIX}'", line=1, field_name="domain"
        )
    authority = rfc3986.AUTHORITY_RE.fullmatch(header["domain"])
    if authority is None or not authority["host"]:  # EIP-4361: an authority with a host
        raise InvalidDomain("domain must name a host", line=1, field_name="domain")
    address = lines.take("the address")
    if _ADDRESS_RE.fullmatch(address) is None:
        raise InvalidAddress("address must be 0x and 40 hex digits", line=2, field_name="address")
    if checksum_address(address) != address:
        raise InvalidAddress("address must be EIP-55 checksummed", line=2, field_name="address")
    if lines.take("an empty line") != "":
        raise UnexpectedLine("expected an empty line after the address", line=3)
    statement: str | None = lines.take("the statement or an empty line")
    if statement == "":
        statement = None
    else:
        if _STATEMENT_RE.fullmatch(statement or "") is None:
            raise InvalidStatement(
                "statement may hold only RFC 3986 reserved and unreserved characters and spaces",
                line=lines.index,
                field_name="statement",
            )
        if lines.take("an empty line") != "":
            raise UnexpectedLine("expected an empty line after the statement", line=lines.index)
    return header["scheme"], header["domain"], address, statement


def _parse_required_fields(lines: _Lines) -> tuple[str, str, str, str]:
    uri = lines.tagged(_URI_TAG, InvalidURI, "uri")
    if not rfc3986.is_uri(uri):
        raise InvalidURI("URI is not an RFC 3986 URI", line=lines.index, field_name="uri")
    version = lines.tagged(_VERSION_TAG, InvalidVersion, "1")
    if version != "1":
        raise InvalidVersion("version must be 1", line=lines.index, field_name="version")
    chain_text = lines.tagged(_CHAIN_TAG, InvalidChainId, "chain id")
    if _CHAIN_ID_RE.fullmatch(chain_text) is None:
        raise InvalidChainId("chain id must be digits", line=lines.index, field_name="chain_id")
    nonce = lines.tagged(_NONCE_TAG, InvalidNonce, "nonce")
    if _NONCE_RE.fullmatch(nonce) is None:
        raise InvalidNonce(
            "nonce must be at least 8 letters or digits", line=lines.index, field_name="nonce"
        )
    issued_at = lines.tagged(_ISSUED_TAG, InvalidTimestamp, "RFC 3339 date-time")
    _time_field(issued_at, "issued_at", lines.index)
    return uri, chain_text, nonce, issued_at


def _parse_optional_fields(
    lines: _Lines,
) -> tuple[str | None, str | None, str | None, tuple[str, ...] | None]:
    expiration_time = lines.optional(_EXPIRATION_TAG)
    if expiration_time is not None:
        _time_field(expiration_time, "expiration_time", lines.index)
    not_before = lines.optional(_NOT_BEFORE_TAG)
    if not_before is not None:
        _time_field(not_before, "not_before", lines.index)
    request_id = lines.optional(_REQUEST_ID_TAG)
    if request_id is not None and _REQUEST_ID_RE.fullmatch(request_id) is None:
        raise InvalidRequestId(
            "request id may hold only RFC 3986 pchar characters",
            line=lines.index,
            field_name="request_id",
        )
    if lines.peek() != _RESOURCES_TAG:
        return expiration_time, not_before, request_id, None
    lines.index += 1
    resources = []
    while (resource_line := lines.peek()) is not None:
        resource = resource_line[len(_RESOURCE_PREFIX) :]
        if not resource_line.startswith(_RESOURCE_PREFIX) or not rfc3986.is_uri(resource):
            raise InvalidResource(
                "a resource line is '- ' and an RFC 3986 URI",
                line=lines.number,
                field_name="resources",
            )
        resources.append(resource)
        lines.index += 1
    return expiration_time, not_before, request_id, tuple(resources)


def _time_field(text: str, name: str, line: int) -> None:
    if parse_rfc3339(text) is None:
        raise InvalidTimestamp(
            f"{name} is not a valid RFC 3339 date-time", line=line, field_name=name
        )


# --- signatures --------------------------------------------------------------------------


def _signer_of(text: str, signature: str | bytes, address: str) -> bool:
    """Whether ``signature`` (EIP-191 over ``text``) is by ``address``, in this module's
    errors (the shared helpers of ``gateway.chain.signatures`` raise their own)."""
    try:
        return signatures.recovers_to(
            signatures.eip191_hash(text), signatures.signature_bytes(signature), address
        )
    except signatures.MalformedSignature as exc:
        raise MalformedSignature(str(exc)) from exc
    except signatures.InvalidSignature as exc:
        raise InvalidSignature from exc


# --- verification ------------------------------------------------------------------------


def check_rules(  # the optional expectations of EIP-4361 verification
    message: SiweMessage,
    *,
    domain: str | None = None,
    nonce: str | None = None,
    time: datetime | None = None,
    clock_skew: timedelta = timedelta(seconds=60),
) -> None:
    """Everything but the signature: the domain and nonce when given, and the time window
    at ``time`` (default now). Raises the SiweError of the first rule that fails."""
    if domain is not None and message.domain != domain:
        raise DomainMismatch
    if nonce is not None and message.nonce != nonce:
        raise NonceMismatch
    now = time or datetime.now(UTC)
    if message.issued_at_datetime > now + clock_skew:
        raise IssuedInFuture
    expiration = message.expiration_datetime
    if expiration is not None and now >= expiration:
        raise ExpiredMessage
    not_before = message.not_before_datetime
    if not_before is not None and now < not_before:
        raise NotYetValid


def verify_message(
    message: SiweMessage | str,
    signature: str | bytes,
    *,
    domain: str | None = None,
    nonce: str | None = None,
    time: datetime | None = None,
) -> str:
    """Verify an EOA's sign-in: the rules (see ``check_rules``) and the EIP-191 signature.

    Returns the checksummed signer; raises the SiweError subclass of the failed rule.
    """
    if isinstance(message, str):
        parsed, text = parse_message(message), message
    else:
        parsed, text = message, message.to_text()
    check_rules(parsed, domain=domain, nonce=nonce, time=time)
    if not _signer_of(text, signature, parsed.address):
        raise InvalidSignature
    return parsed.address
