"""Observable gateway between dApp web clients and Ethereum."""

import os


def _bind_keccak_backend() -> None:
    """Keccak-256 is on every hot path (EIP-712 digests, addresses, Merkle leaves). eth-hash
    picks pycryptodome first when both back ends are installed; its cffi call costs ~5 us a
    hash against ~1 us for safe-pysha3's C extension (measured on this machine). eth-hash's
    automatic back end binds itself on its first call from ``ETH_HASH_BACKEND`` (its
    documented switch): the call is made here with the variable set, which is then removed,
    so child processes choose for themselves. An operator's ETH_HASH_BACKEND wins."""
    if "ETH_HASH_BACKEND" in os.environ:
        return
    from eth_hash.auto import keccak  # noqa: PLC0415  # only to bind its back end

    os.environ["ETH_HASH_BACKEND"] = "pysha3"
    try:
        keccak(b"")
    except (ImportError, ValueError):  # safe-pysha3 missing: eth-hash chooses on its next call
        pass
    finally:
        del os.environ["ETH_HASH_BACKEND"]


_bind_keccak_backend()
