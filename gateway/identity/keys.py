"""Session-token signing keys in PEM files: Ed25519 (EdDSA) or P-256 (ES256); the newest key
of the configured algorithm signs, the newest few of either kind verify.

``gateway keys rotate`` adds a key; every gateway sharing the directory picks it up on its
next reload, and tokens signed by the previous key keep verifying until they expire. ES256
is for verifiers that skip OKP keys in a JWKS (eRPC's JWT auth, many JWKS clients); moving
from one algorithm to the other is a rotation like any other.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

_PATTERN = "key-*.pem"

Algorithm = Literal["EdDSA", "ES256"]
PrivateKey = Ed25519PrivateKey | ec.EllipticCurvePrivateKey
PublicKey = Ed25519PublicKey | ec.EllipticCurvePublicKey


@dataclass(frozen=True, slots=True)
class SigningKey:
    kid: str
    private_key: PrivateKey
    created_at: float

    @property
    def algorithm(self) -> Algorithm:
        return "EdDSA" if isinstance(self.private_key, Ed25519PrivateKey) else "ES256"

    @property
    def public_key(self) -> PublicKey:
        return self.private_key.public_key()

    def public_jwk(self) -> dict[str, str]:
        members = _jwk_members(self.public_key)
        return {**members, "kid": self.kid, "use": "sig", "alg": self.algorithm}


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _jwk_members(public_key: PublicKey) -> dict[str, str]:
    """The required members of the key's JWK (RFC 7638 section 3.2)."""
    if isinstance(public_key, Ed25519PublicKey):
        raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return {"crv": "Ed25519", "kty": "OKP", "x": _b64url(raw)}
    numbers = public_key.public_numbers()
    return {
        "crv": "P-256",
        "kty": "EC",
        "x": _b64url(numbers.x.to_bytes(32, "big")),
        "y": _b64url(numbers.y.to_bytes(32, "big")),
    }


def thumbprint(public_key: PublicKey) -> str:
    """RFC 7638 JWK thumbprint: the key id, stable across restarts and replicas."""
    canonical = json.dumps(_jwk_members(public_key), separators=(",", ":"), sort_keys=True)
    return _b64url(hashlib.sha256(canonical.encode()).digest())


def _load(path: Path) -> SigningKey:
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey) and not (
        isinstance(key, ec.EllipticCurvePrivateKey) and isinstance(key.curve, ec.SECP256R1)
    ):
        raise TypeError(f"{path}: not an Ed25519 or P-256 private key")
    created = int(path.stem.removeprefix("key-")) / 1e6
    return SigningKey(kid=thumbprint(key.public_key()), private_key=key, created_at=created)


def rotate(directory: Path, algorithm: Algorithm = "EdDSA") -> SigningKey:
    """Create a new key (mode 0600) in ``directory``; it signs from the next reload on."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    key: PrivateKey = (
        Ed25519PrivateKey.generate()
        if algorithm == "EdDSA"
        else ec.generate_private_key(ec.SECP256R1())
    )
    created_us = time.time_ns() // 1000
    path = directory / f"key-{created_us:020d}.pem"
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(pem)
    return SigningKey(
        kid=thumbprint(key.public_key()), private_key=key, created_at=created_us / 1e6
    )


class KeyRing:
    """The keys of ``directory``: the newest signs, the newest ``keep`` verify (and are
    published in the JWKS)."""

    def __init__(self, directory: Path, *, keep: int = 2, algorithm: Algorithm = "EdDSA") -> None:
        self.directory = directory
        self.keep = keep
        self.algorithm = algorithm
        self._keys: list[SigningKey] = []
        self._seen: tuple[str, ...] = ()

    @classmethod
    def open(
        cls, directory: Path, *, keep: int = 2, create: bool = True, algorithm: Algorithm = "EdDSA"
    ) -> KeyRing:
        """The ring of ``directory``; with ``create``, a first key of ``algorithm`` when the
        newest keys hold none of it (a first start, or a change of algorithm)."""
        ring = cls(directory, keep=keep, algorithm=algorithm)
        names = sorted(directory.glob(_PATTERN))
        if create and not any(_load(path).algorithm == algorithm for path in names[-keep:]):
            rotate(directory, algorithm)
        ring.reload()
        return ring

    def reload(self) -> bool:
        """Re-read the directory; True when the set of keys changed."""
        names = tuple(sorted(path.name for path in self.directory.glob(_PATTERN)))
        if names == self._seen:
            return False
        if not names:
            raise FileNotFoundError(
                f"no signing keys in {self.directory}: run `gateway keys rotate`"
            )
        keys = [_load(self.directory / name) for name in names[-self.keep :]]
        self._keys = list(reversed(keys))  # newest first
        self._seen = names
        return True

    @property
    def current(self) -> SigningKey:
        """The newest key of the ring's algorithm (the newest of all if it has none)."""
        for key in self._keys:
            if key.algorithm == self.algorithm:
                return key
        return self._keys[0]

    def verification_key(self, kid: str) -> SigningKey | None:
        for key in self._keys:
            if key.kid == kid:
                return key
        return None

    def jwks(self) -> dict[str, Any]:
        return {"keys": [key.public_jwk() for key in self._keys]}
