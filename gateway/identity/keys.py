"""Session-token signing keys: Ed25519 in PEM files, newest signs, the newest few verify.

``gateway keys rotate`` adds a key; every gateway sharing the directory picks it up on its
next reload, and tokens signed by the previous key keep verifying until they expire.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

_PATTERN = "key-*.pem"


@dataclass(frozen=True, slots=True)
class SigningKey:
    kid: str
    private_key: Ed25519PrivateKey
    created_at: float

    @property
    def public_key(self) -> Ed25519PublicKey:
        return self.private_key.public_key()

    def public_jwk(self) -> dict[str, str]:
        return {**_okp_members(self.public_key), "kid": self.kid, "use": "sig", "alg": "EdDSA"}


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _okp_members(public_key: Ed25519PublicKey) -> dict[str, str]:
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return {"crv": "Ed25519", "kty": "OKP", "x": _b64url(raw)}


def thumbprint(public_key: Ed25519PublicKey) -> str:
    """RFC 7638 JWK thumbprint: the key id, stable across restarts and replicas."""
    canonical = json.dumps(_okp_members(public_key), separators=(",", ":"), sort_keys=True)
    return _b64url(hashlib.sha256(canonical.encode()).digest())


def _load(path: Path) -> SigningKey:
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise TypeError(f"{path}: not an Ed25519 private key")
    created = int(path.stem.removeprefix("key-")) / 1e6
    return SigningKey(kid=thumbprint(key.public_key()), private_key=key, created_at=created)


def rotate(directory: Path) -> SigningKey:
    """Create a new key (mode 0600) in ``directory``; it signs from the next reload on."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = Ed25519PrivateKey.generate()
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

    def __init__(self, directory: Path, *, keep: int = 2) -> None:
        self.directory = directory
        self.keep = keep
        self._keys: list[SigningKey] = []
        self._seen: tuple[str, ...] = ()

    @classmethod
    def open(cls, directory: Path, *, keep: int = 2, create: bool = True) -> KeyRing:
        ring = cls(directory, keep=keep)
        if create and not sorted(directory.glob(_PATTERN)):
            rotate(directory)
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
        return self._keys[0]

    def verification_key(self, kid: str) -> Ed25519PublicKey | None:
        for key in self._keys:
            if key.kid == kid:
                return key.public_key
        return None

    def jwks(self) -> dict[str, Any]:
        return {"keys": [key.public_jwk() for key in self._keys]}
