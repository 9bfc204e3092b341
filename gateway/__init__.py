"""Observable gateway between dApp web clients and Ethereum."""

import os


def _bind_keccak_backend() -> None:
    """Keccak-256 is on every hot path (EIP-712 digests, addresses, Merkle leaves). eth-hash
    picks pycryptodome first when both back ends are installed; its cffi call costs ~5 us a
    hash against ~1 us for safe-pysha3's C extension (measured on this machine). eth-hash's
    automatic back end is bound here to safe-pysha3, the way its own first call binds it,
    without touching the environment. An operator's ETH_HASH_BACKEND wins."""
    if "ETH_HASH_BACKEND" in os.environ:
        return
    from eth_hash.auto import keccak  # noqa: PLC0415  # only to bind its back end
    from eth_hash.utils import load_backend  # noqa: PLC0415

    try:
        chosen = load_backend("pysha3")
    except ImportError:  # safe-pysha3 missing: eth-hash chooses on its first call
        return
    automatic = keccak._backend  # noqa: SLF001  # eth-hash's AutoBackend, bound as it would bind itself
    automatic.keccak256 = chosen.keccak256  # type: ignore[method-assign]  # what AutoBackend._initialize sets
    automatic.preimage = chosen.preimage  # type: ignore[method-assign]


_bind_keccak_backend()
