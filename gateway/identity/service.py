"""The sign-in flow: nonce, verification of a signed message, session, logout."""

from __future__ import annotations

import dataclasses
import secrets
import string
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import structlog
from opentelemetry import trace

from gateway.chain import signatures
from gateway.chain.wallets import (
    ContractWallets,
    ContractWalletsUnavailable,
    WalletType,
    verify_signer,
)
from gateway.clock import rfc3339
from gateway.config import Settings
from gateway.errors import GatewayError, InvalidParams, RateLimited, Unavailable
from gateway.identity import siwe
from gateway.identity.siwe import SiweError, SiweMessage
from gateway.identity.store import IdentityStore, NonceState
from gateway.identity.tokens import RevokedToken, Session, TokenIssuer
from gateway.identity.uri import host_port, uri_origin
from gateway.telemetry import Metrics

log = structlog.get_logger("gateway.identity")

_NONCE_ALPHABET = string.ascii_letters + string.digits
NONCE_LENGTH = 22  # 22 base-62 characters: 130 bits
REVOCATION_CACHE_S = 5.0


class NonceUnknown(SiweError):
    code = "siwe.nonce.unknown"
    outcome = "nonce_unknown"
    default_message = "nonce was not issued by this gateway"


class NonceReused(SiweError):
    code = "siwe.nonce.reused"
    outcome = "nonce_reused"
    default_message = "nonce has already been used"


class NonceExpired(SiweError):
    code = "siwe.nonce.expired"
    outcome = "nonce_expired"
    default_message = "nonce has expired"


class TooManyNonces(RateLimited):
    code = "auth.too_many_nonces"
    default_message = "too many unused sign-in nonces for this client"


class ContractWalletUnavailable(SiweError):
    http_status = 503
    code = "siwe.contract_wallet.unavailable"
    outcome = "chain_unavailable"
    default_message = "cannot check a contract wallet: no chain configured"


_NONCE_ERRORS: dict[NonceState, type[SiweError]] = {
    NonceState.UNKNOWN: NonceUnknown,
    NonceState.REUSED: NonceReused,
    NonceState.EXPIRED: NonceExpired,
}


def new_nonce() -> str:
    return "".join(secrets.choice(_NONCE_ALPHABET) for _ in range(NONCE_LENGTH))


class BadMessageRequest(InvalidParams):
    """A message the gateway would not accept could not be written (422)."""

    code = "siwe.message_request.invalid"


@dataclass(frozen=True, slots=True)
class SignIn:
    token: str
    session: Session


class RecentChecks:
    """Keys checked within the last ``ttl_s`` seconds, oldest first: an entry older than
    that is dropped as the next one is remembered, so the map holds only the keys of the
    last ``ttl_s`` (a token used once stays no longer than that)."""

    def __init__(self, ttl_s: float) -> None:
        self.ttl_s = ttl_s
        self._checked: OrderedDict[str, float] = OrderedDict()

    def __len__(self) -> int:
        return len(self._checked)

    def fresh(self, key: str, now: float) -> bool:
        checked = self._checked.get(key)
        return checked is not None and now - checked <= self.ttl_s

    def remember(self, key: str, now: float) -> None:
        self._checked[key] = now
        self._checked.move_to_end(key)
        while self._checked:
            oldest, at = next(iter(self._checked.items()))
            if now - at <= self.ttl_s:
                break
            del self._checked[oldest]

    def forget(self, key: str) -> None:
        self._checked.pop(key, None)


class SignInService:
    """Everything sign-in needs, independent of HTTP."""

    def __init__(  # noqa: PLR0913  # the collaborators of sign-in
        self,
        settings: Settings,
        *,
        store: IdentityStore,
        tokens: TokenIssuer,
        wallets: Mapping[int, ContractWallets],
        metrics: Metrics,
        tracer: trace.Tracer,
    ) -> None:
        self.settings = settings.identity
        self.chain_ids = settings.siwe_chain_ids()
        self.domains = frozenset(self.settings.siwe_domains)
        self.store = store
        self.tokens = tokens
        self.wallets = wallets  # by chain id: the nodes of that network
        self.metrics = metrics
        self.tracer = tracer
        self._not_revoked = RecentChecks(REVOCATION_CACHE_S)

    async def issue_nonce(self, client: str) -> tuple[str, float]:
        nonce = new_nonce()
        now = time.time()
        expires_at = now + self.settings.nonce_ttl_s
        stored = await self.store.issue_nonce(
            nonce,
            client=client,
            now=now,
            expires_at=expires_at,
            max_outstanding=self.settings.max_outstanding_nonces,
        )
        if not stored:
            raise TooManyNonces(retry_after_s=min(60.0, self.settings.nonce_ttl_s))
        return nonce, expires_at

    async def sign_in(self, text: str, signature: str, *, origin: str | None) -> SignIn:
        """Verify a signed message and open a session; counts and logs every attempt."""
        started = time.perf_counter()
        address: str | None = None
        outcome = "ok"
        try:
            message = self._parse(text)
            address = message.address
            self._check_rules(message, origin)
            wallet_type = await self._check_signature(message, text, signature)
            await self._consume_nonce(message.nonce)
            not_after = message.expiration_datetime
            token, session = self.tokens.issue(
                message.address,
                message.chain_id,
                wallet_type,
                not_after=None if not_after is None else not_after.timestamp(),
            )
            return SignIn(token, session)
        except SiweError as error:
            outcome = error.outcome
            raise
        except GatewayError as error:
            outcome = "unavailable" if isinstance(error, Unavailable) else "error"
            raise
        finally:
            self.metrics.auth_attempts.labels(outcome).inc()
            self.metrics.auth_verify_duration.observe(time.perf_counter() - started)
            log.info("sign-in", outcome=outcome, address=address)

    def _parse(self, text: str) -> SiweMessage:
        with self.tracer.start_as_current_span("siwe.parse"):
            return siwe.parse_message(text)

    async def new_message(  # noqa: PLR0913  # the fields a wallet kit supplies
        self,
        *,
        address: str,
        chain_id: int,
        statement: str | None,
        resources: tuple[str, ...],
        origin: str | None,
        client: str,
    ) -> str:
        """The EIP-4361 text this gateway will accept from ``address``, for wallet kits that
        let the server write the message: domain and URI from the caller's Origin when it is
        an accepted one (else the first accepted domain), a fresh nonce, issued now and
        expiring with the nonce. Checked by the same rules as a sign-in (422 naming the rule
        otherwise); nothing is issued for a message that would fail them."""
        parsed_origin = uri_origin(origin) if origin else None
        if parsed_origin is not None and parsed_origin[1] in self.domains:
            scheme = parsed_origin[0]
            domain = origin.split("://", 1)[1].rstrip("/") if origin else ""
        else:
            domain = self.settings.siwe_domains[0]
            local = domain.split(":", 1)[0] in {"localhost", "127.0.0.1"}
            scheme = "http" if local else "https"
        if not signatures.ADDRESS.fullmatch(address):
            raise BadMessageRequest("address must be 0x and 40 hex digits")
        now = time.time()
        draft = SiweMessage(
            scheme=scheme,
            domain=domain,
            address=signatures.checksum_address(address),
            statement=statement,
            uri=f"{scheme}://{domain}/",
            chain_id=chain_id,
            nonce="0" * NONCE_LENGTH,
            issued_at=rfc3339(now, timespec="milliseconds"),
            expiration_time=rfc3339(now + self.settings.nonce_ttl_s, timespec="milliseconds"),
            resources=resources or None,
        )
        try:
            text = draft.to_text()
            self._check_rules(siwe.parse_message(text), origin if parsed_origin else None)
        except SiweError as error:
            raise BadMessageRequest(error.message, code=error.code) from error
        nonce, _ = await self.issue_nonce(client)
        return dataclasses.replace(draft, nonce=nonce).to_text()

    def _check_rules(self, message: SiweMessage, origin: str | None) -> None:
        span = trace.get_current_span()
        span.set_attribute("siwe.chain_id", message.chain_id)
        scheme = message.scheme
        if origin is not None:
            parsed_origin = uri_origin(origin)
            if parsed_origin is None:
                raise siwe.OriginMismatch
            scheme = scheme or parsed_origin[0]
            if host_port(message.domain, parsed_origin[0]) != parsed_origin[1]:
                raise siwe.OriginMismatch
        if host_port(message.domain, scheme) not in self.domains:
            raise siwe.DomainMismatch
        target = uri_origin(message.uri)
        if target is None or target[1] not in self.domains:
            raise siwe.URINotAllowed
        if message.chain_id not in self.chain_ids:
            raise siwe.ChainNotAllowed
        siwe.check_rules(
            message,
            clock_skew=timedelta(seconds=self.settings.clock_skew_s),
            time=datetime.now(UTC),
        )

    async def _check_signature(self, message: SiweMessage, text: str, signature: str) -> WalletType:
        try:
            raw = signatures.signature_bytes(signature)
        except signatures.MalformedSignature as exc:
            raise siwe.MalformedSignature(str(exc)) from exc
        # A contract wallet is asked on the network of the message's chain id.
        wallets = self.wallets.get(message.chain_id)
        with self.tracer.start_as_current_span("siwe.recover") as span:
            try:
                wallet_type = await verify_signer(
                    wallets, message.address, signatures.eip191_hash(text), raw
                )
            except signatures.MalformedSignature as exc:
                raise siwe.MalformedSignature(str(exc)) from exc
            except signatures.InvalidSignature as exc:
                raise siwe.InvalidSignature from exc
            except ContractWalletsUnavailable as exc:
                raise ContractWalletUnavailable from exc
            span.set_attribute("wallet.type", wallet_type)
            return wallet_type

    async def _consume_nonce(self, nonce: str) -> None:
        with self.tracer.start_as_current_span("siwe.nonce"):
            state = await self.store.consume_nonce(nonce, now=time.time())
        if state is not NonceState.CONSUMED:
            raise _NONCE_ERRORS[state]

    async def session_cached(self, token: str) -> Session:
        """Like ``session`` but remembers that a token was not revoked for a few seconds:
        the JSON-RPC path checks every request and must not query storage each time. A
        logout takes effect on this path within ``REVOCATION_CACHE_S``."""
        session = self.tokens.decode(token)
        now = time.monotonic()
        if not self._not_revoked.fresh(session.jti, now):
            if await self.store.is_revoked(session.jti):
                self._not_revoked.forget(session.jti)
                raise RevokedToken
            self._not_revoked.remember(session.jti, now)
        return session

    async def session(self, token: str) -> Session:
        session = self.tokens.decode(token)
        if await self.store.is_revoked(session.jti):
            raise RevokedToken
        return session

    async def logout(self, token: str) -> Session:
        session = await self.session(token)
        await self.store.revoke(session.jti, now=time.time(), expires_at=session.expires_at)
        self._not_revoked.forget(session.jti)
        log.info("logout", address=session.address)
        return session
