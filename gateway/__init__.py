"""Observable gateway between dApp web clients and Ethereum."""

import os


def _bind_keccak_backend() -> None:
    """Keccak-256 is on every hot path (EIP-712 digests, addresses, Merkle leaves). eth-hash
    picks pycryptodome first when both back ends are installed; its cffi call costs ~5 us a
    hash against ~1 us for safe-pysha3's C extension (measured on this machine). The back
    end is bound on first use, so it is bound here, through eth-hash's own switch, which is
    then removed again: child processes (other Python environments) must not inherit it.
    An operator's ETH_HASH_BACKEND wins."""
    if "ETH_HASH_BACKEND" in os.environ:
        return
    os.environ["ETH_HASH_BACKEND"] = "pysha3"
    try:
        from eth_hash.auto import keccak  # noqa: PLC0415  # after the switch is set

        keccak(b"")
    except ImportError:  # safe-pysha3 missing: eth-hash chooses again on the next call
        pass
    finally:
        del os.environ["ETH_HASH_BACKEND"]


_bind_keccak_backend()
