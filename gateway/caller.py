"""Who is calling: worked out once per request and shared by every handler and feature.

A ``Caller`` is the client ip (``X-Forwarded-For`` only when trusted), the session behind
its token (``Authorization: Bearer`` or the session cookie) when it has one, its tier and
the key its rate limits count by. Sessions are resolved by whatever the app registered
under ``SESSIONS`` (the identity feature's sign-in service), so features that need the
caller do not import identity. The first ``caller_of`` of a request resolves it; later ones
get the same object.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

from aiohttp import web

from gateway.config import SETTINGS
from gateway.errors import Unauthenticated

Tier = Literal["anonymous", "signed_in"]


class SessionLike(Protocol):
    """What callers need of a session: whose it is."""

    @property
    def address(self) -> str: ...


class SessionResolver(Protocol):
    async def session_cached(self, token: str) -> SessionLike:
        """The session of a valid token; Unauthenticated otherwise, Unavailable when the
        revocation store cannot answer."""
        ...


SESSIONS = web.AppKey("sessions", SessionResolver)


@dataclass(frozen=True, slots=True)
class Caller:
    ip: str
    session: SessionLike | None = None

    @property
    def tier(self) -> Tier:
        return "signed_in" if self.session is not None else "anonymous"

    @property
    def key(self) -> str:
        """What rate limits count: the signed-in address, else the client ip."""
        return self.session.address.lower() if self.session is not None else self.ip


_CALLER = web.RequestKey("caller", Caller)


def client_ip(request: web.Request, *, trust_forwarded_for: bool) -> str:
    if trust_forwarded_for:
        forwarded = request.headers.get("X-Forwarded-For")
        if forwarded:
            return forwarded_ip(forwarded)
    return request.remote or ""


def forwarded_ip(header: str) -> str:
    """The client's address in an ``X-Forwarded-For`` value: its first entry."""
    return header.split(",", 1)[0].strip()


def bearer_token(header: str) -> str:
    """The token of an ``Authorization: Bearer <token>`` value; Unauthenticated otherwise."""
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    raise Unauthenticated("Authorization header must be 'Bearer <token>'")


async def resolve_caller(resolver: SessionResolver | None, ip: str, token: str) -> Caller:
    """The caller behind a token, whichever transport brought it: Unauthenticated for a
    token that is not valid (or on a gateway without sign-in), Unavailable when the session
    store cannot answer."""
    if resolver is None:  # no sign-in on this gateway: no token can be valid
        raise Unauthenticated
    return Caller(ip, await resolver.session_cached(token))


def request_token(request: web.Request) -> str | None:
    """The session token of a request: ``Authorization: Bearer`` first, then the cookie."""
    header = request.headers.get("Authorization")
    if header is not None:
        return bearer_token(header)
    if "Cookie" not in request.headers:  # request.cookies parses the header on every access
        return None
    cookie = request.cookies.get(request.app[SETTINGS].identity.cookie_name)
    return cookie or None


def ip_of(request: web.Request) -> str:
    """The client ip, by the app's setting on ``X-Forwarded-For``."""
    return client_ip(request, trust_forwarded_for=request.app[SETTINGS].server.trust_forwarded_for)


def anonymous(request: web.Request) -> Caller:
    """The caller without its session (when sessions cannot be checked)."""
    return Caller(ip_of(request))


async def caller_of(request: web.Request) -> Caller:
    """The request's caller; raises Unauthenticated for a token that is not valid, and
    Unavailable when the session store cannot answer (the caller decides what then)."""
    headers = request.headers
    if "Authorization" not in headers and "Cookie" not in headers:
        return anonymous(request)  # nothing to resolve: cheaper than remembering it
    if _CALLER in request:
        return request[_CALLER]
    caller = anonymous(request)
    token = request_token(request)
    if token is not None:
        caller = await resolve_caller(request.app.get(SESSIONS), caller.ip, token)
    request[_CALLER] = caller
    return caller
