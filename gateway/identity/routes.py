"""Sign-in endpoints: /auth/nonce, /auth/verify, /auth/session, /auth/logout, JWKS."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import structlog
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from gateway.background import running
from gateway.bodies import read_model
from gateway.caller import SESSIONS, ip_of, request_token
from gateway.chain.wallets import contract_wallets
from gateway.clock import rfc3339
from gateway.config import SETTINGS
from gateway.errors import Unauthenticated
from gateway.identity.keys import KeyRing
from gateway.identity.redis_store import RedisIdentityStore
from gateway.identity.service import NONCE_LENGTH, SignInService
from gateway.identity.store import IdentityStore, SqlIdentityStore
from gateway.identity.tokens import Session, TokenIssuer
from gateway.openapi import Parameter, operation
from gateway.ratelimit import Limit, RateLimiter, limiter_for, take_or_refuse
from gateway.storage import STORAGE
from gateway.storage.redis import REDIS
from gateway.telemetry import TELEMETRY

log = structlog.get_logger("gateway.identity")

SIGN_IN = web.AppKey("sign_in", SignInService)
KEYS = web.AppKey("keys", KeyRing)
AUTH_LIMITER = web.AppKey("auth_limiter", RateLimiter)

routes = web.RouteTableDef()


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class NonceResponse(_Model):
    """A fresh single-use nonce for a sign-in message."""

    nonce: str = Field(min_length=NONCE_LENGTH, max_length=NONCE_LENGTH)
    expiresAt: str  # noqa: N815  # the API's JSON is camelCase


class MessageRequest(_Model):
    """What a wallet kit knows when it asks the server to write the sign-in message."""

    address: str = Field(pattern=r"^0x[0-9a-fA-F]{40}$")
    chainId: int = Field(ge=1)  # noqa: N815  # the API's JSON is camelCase
    statement: str | None = Field(default=None, max_length=1024)
    resources: list[str] = Field(default_factory=list, max_length=32)


class MessageResponse(_Model):
    """The EIP-4361 text to sign (also ``text/plain`` with ``Accept: text/plain``)."""

    message: str


class VerifyRequest(_Model):
    """An EIP-4361 message and the wallet's signature of it."""

    message: str = Field(min_length=1, max_length=16_384)
    signature: str = Field(pattern=r"^0x[0-9a-fA-F]*$", max_length=8_192)


class VerifyResponse(_Model):
    """The session: a bearer token (also set as an HttpOnly cookie)."""

    token: str
    tokenType: str = "Bearer"  # noqa: N815
    address: str
    chainId: int  # noqa: N815
    expiresAt: str  # noqa: N815


class SessionResponse(_Model):
    """Who the caller is."""

    address: str
    chainId: int  # noqa: N815
    walletType: str  # noqa: N815
    issuedAt: str  # noqa: N815
    expiresAt: str  # noqa: N815


class JWKS(_Model):
    """Public keys (JWK set) that verify session tokens: the current and previous ones."""

    keys: list[dict[str, str]]


async def _limit(request: web.Request, scope: str, per_minute: float) -> None:
    settings = request.app[SETTINGS]
    key = f"{scope}:{ip_of(request)}"
    await take_or_refuse(
        request.app[AUTH_LIMITER],
        key,
        Limit.per_minute(per_minute, burst=settings.identity.rate_burst),
        metrics=request.app[TELEMETRY].metrics,
        tier="auth",
        message=f"too many {scope} requests from this client",
    )


async def current_session(request: web.Request) -> Session:
    token = request_token(request)
    if token is None:
        raise Unauthenticated
    return await request.app[SIGN_IN].session(token)


@routes.get("/auth/nonce")
@operation(
    summary="A fresh sign-in nonce",
    tag="identity",
    responses={200: NonceResponse, 429: "Too many requests or unused nonces"},
)
async def nonce(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    await _limit(request, "nonce", settings.identity.nonce_rate_per_minute)
    client = ip_of(request)
    value, expires_at = await request.app[SIGN_IN].issue_nonce(client)
    if _wants_text(request):  # wallet kits (RainbowKit, ConnectKit) read it with res.text()
        return web.Response(text=value, headers={"Cache-Control": "no-store"})
    return web.json_response(
        {"nonce": value, "expiresAt": rfc3339(expires_at)}, headers={"Cache-Control": "no-store"}
    )


def _wants_text(request: web.Request) -> bool:
    """``Accept: text/plain`` without JSON: JSON stays the default."""
    accept = request.headers.get("Accept", "")
    return "text/plain" in accept and "application/json" not in accept


@routes.post("/auth/message")
@operation(
    summary="Write the sign-in message the gateway will accept (for wallet kits)",
    tag="identity",
    request=MessageRequest,
    responses={
        200: MessageResponse,
        422: "A message with these fields would not be accepted (the rule is named)",
        429: "Too many requests or unused nonces",
    },
    description="Domain and URI come from the request's Origin when it is an accepted "
    "domain (else the first accepted one); a fresh nonce is issued; issued now, expiring "
    "with the nonce.",
)
async def message(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    await _limit(request, "nonce", settings.identity.nonce_rate_per_minute)
    body = await read_model(request, MessageRequest)
    text = await request.app[SIGN_IN].new_message(
        address=body.address,
        chain_id=body.chainId,
        statement=body.statement,
        resources=tuple(body.resources),
        origin=request.headers.get("Origin"),
        client=ip_of(request),
    )
    if _wants_text(request):
        return web.Response(text=text, headers={"Cache-Control": "no-store"})
    return web.json_response({"message": text}, headers={"Cache-Control": "no-store"})


@routes.post("/auth/verify")
@operation(
    summary="Sign in: verify a signed EIP-4361 message, open a session",
    tag="identity",
    request=VerifyRequest,
    responses={
        200: VerifyResponse,
        400: "Malformed message or signature",
        401: "Signature or a message rule does not verify",
        422: "Body fields invalid",
        429: "Rate limited",
    },
)
async def verify(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    await _limit(request, "verify", settings.identity.verify_rate_per_minute)
    body = await read_model(request, VerifyRequest)
    result = await request.app[SIGN_IN].sign_in(
        body.message, body.signature, origin=request.headers.get("Origin")
    )
    session = result.session
    response = web.json_response(
        {
            "token": result.token,
            "tokenType": "Bearer",
            "address": session.address,
            "chainId": session.chain_id,
            "expiresAt": rfc3339(session.expires_at),
        },
        headers={"Cache-Control": "no-store"},
    )
    response.set_cookie(
        settings.identity.cookie_name,
        result.token,
        httponly=True,
        samesite="Strict",
        secure=settings.identity.cookie_secure,
        path="/",
        max_age=max(0, session.expires_at - int(time.time())),
    )
    return response


_BEARER = Parameter("Authorization", "header", "`Bearer <token>` (or the session cookie)")


@routes.get("/auth/session")
@operation(
    summary="The caller's session",
    tag="identity",
    parameters=(_BEARER,),
    responses={200: SessionResponse, 401: "No valid session"},
)
async def session(request: web.Request) -> web.Response:
    current = await current_session(request)
    return web.json_response(
        {
            "address": current.address,
            "chainId": current.chain_id,
            "walletType": current.wallet_type,
            "issuedAt": rfc3339(current.issued_at),
            "expiresAt": rfc3339(current.expires_at),
        }
    )


@routes.get("/auth/logout")  # as wallet kits' reference backends do; no body, same effect
@routes.post("/auth/logout")
@operation(
    summary="End the session: its token stops working everywhere",
    tag="identity",
    parameters=(_BEARER,),
    responses={204: "Logged out", 401: "No valid session"},
)
async def logout(request: web.Request) -> web.Response:
    token = request_token(request)
    if token is None:
        raise Unauthenticated
    await request.app[SIGN_IN].logout(token)
    response = web.Response(status=204)
    response.del_cookie(request.app[SETTINGS].identity.cookie_name, path="/")
    return response


@routes.get("/.well-known/jwks.json")
@operation(summary="Public keys that verify session tokens", tag="identity", responses={200: JWKS})
async def jwks(request: web.Request) -> web.Response:
    return web.json_response(
        request.app[KEYS].jwks(), headers={"Cache-Control": "public, max-age=300"}
    )


async def identity_ctx(app: web.Application) -> AsyncIterator[None]:
    """Keys, store and the sign-in service; background key reload and expiry purge."""
    settings = app[SETTINGS]
    identity = settings.identity
    keys = await asyncio.to_thread(
        KeyRing.open,
        identity.keys_dir,
        keep=identity.jwks_keys,
        algorithm=identity.token_algorithm,
    )
    shared = app.get(REDIS)
    store: IdentityStore = (
        SqlIdentityStore(app[STORAGE])
        if shared is None
        else RedisIdentityStore(shared, app[TELEMETRY].metrics)
    )
    app[KEYS] = keys
    app[AUTH_LIMITER] = limiter_for(app)
    app[SIGN_IN] = SignInService(
        settings,
        store=store,
        tokens=TokenIssuer(
            keys, issuer=identity.issuer, audience=identity.audience, ttl_s=identity.session_ttl_s
        ),
        wallets=contract_wallets(app),
        metrics=app[TELEMETRY].metrics,
        tracer=app[TELEMETRY].tracer,
    )
    app[SESSIONS] = app[SIGN_IN]  # how every feature learns who a token's caller is

    async def reload_keys() -> None:
        while True:
            await asyncio.sleep(identity.key_reload_s)
            try:
                if await asyncio.to_thread(keys.reload):
                    log.info("signing keys reloaded", current_kid=keys.current.kid)
            except (OSError, ValueError, TypeError) as exc:
                log.error("signing keys reload failed", error=str(exc))  # noqa: TRY400

    async def purge() -> None:
        while True:
            await asyncio.sleep(60)
            try:
                await store.purge(now=time.time())
            except Exception:  # a failed purge retries next minute
                log.warning("identity purge failed", exc_info=True)

    async with running(reload_keys(), purge(), name="identity-maintenance"):
        yield
