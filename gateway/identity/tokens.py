"""Session tokens: JWTs (EdDSA or ES256, by the signing key) whose subject is a CAIP-10
account id."""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass

import jwt

from gateway.chain.wallets import WalletType
from gateway.errors import Unauthenticated
from gateway.identity.keys import KeyRing


class InvalidToken(Unauthenticated):
    code = "auth.invalid_token"
    default_message = "session token is invalid or expired"


class RevokedToken(Unauthenticated):
    code = "auth.revoked_token"
    default_message = "session token has been revoked"


@dataclass(frozen=True, slots=True)
class Session:
    address: str
    chain_id: int
    wallet_type: WalletType
    issued_at: int
    expires_at: int
    jti: str

    @property
    def subject(self) -> str:
        """CAIP-10 account id."""
        return f"eip155:{self.chain_id}:{self.address}"


def _parse_subject(subject: object) -> tuple[int, str]:
    if not isinstance(subject, str):
        raise InvalidToken
    namespace, _, rest = subject.partition(":")
    chain, _, address = rest.partition(":")
    if namespace != "eip155" or not chain.isdigit() or len(address) != 42:
        raise InvalidToken
    return int(chain), address


class TokenIssuer:
    """Issues and checks tokens with the key ring; revocation is checked by the caller."""

    def __init__(self, keys: KeyRing, *, issuer: str, audience: str, ttl_s: int) -> None:
        self.keys = keys
        self.issuer = issuer
        self.audience = audience
        self.ttl_s = ttl_s

    def issue(
        self,
        address: str,
        chain_id: int,
        wallet_type: WalletType,
        *,
        not_after: float | None = None,
        now: float | None = None,
    ) -> tuple[str, Session]:
        """A token for ``address``; it never outlives ``not_after`` (the sign-in message's
        expiration time)."""
        issued = int(now if now is not None else time.time())
        expires = issued + self.ttl_s
        if not_after is not None:
            expires = min(expires, int(not_after))
        session = Session(address, chain_id, wallet_type, issued, expires, secrets.token_hex(16))
        key = self.keys.current
        claims = {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": session.subject,
            "iat": issued,
            "nbf": issued,
            "exp": expires,
            "jti": session.jti,
            "wallet_type": wallet_type,
        }
        token = jwt.encode(
            claims, key.private_key, algorithm=key.algorithm, headers={"kid": key.kid}
        )
        return token, session

    def decode(self, token: str) -> Session:
        """Check signature, issuer, audience and time; raises InvalidToken."""
        try:
            header = jwt.get_unverified_header(token)
            key = self.keys.verification_key(str(header.get("kid", "")))
            if key is None or header.get("alg") != key.algorithm:  # the key decides, not the token
                raise InvalidToken
            claims = jwt.decode(
                token,
                key.public_key,
                algorithms=[key.algorithm],
                audience=self.audience,
                issuer=self.issuer,
                options={"require": ["exp", "iat", "sub", "jti", "iss", "aud"]},
                leeway=5,
            )
        except jwt.PyJWTError as exc:
            raise InvalidToken from exc
        chain_id, address = _parse_subject(claims["sub"])
        wallet_type = claims.get("wallet_type")
        if wallet_type not in {"eoa", "contract"}:
            raise InvalidToken
        return Session(
            address,
            chain_id,
            wallet_type,
            int(claims["iat"]),
            int(claims["exp"]),
            str(claims["jti"]),
        )
