"""Observable gateway between dApp web clients and Ethereum."""

import os

# Keccak-256 is on every hot path (EIP-712 digests, addresses, Merkle leaves). eth-hash picks
# pycryptodome first when both back ends are installed; its cffi call costs ~5 us a hash
# against ~1 us for safe-pysha3's C extension (measured on this machine). Chosen here,
# before anything hashes; an operator's ETH_HASH_BACKEND still wins.
os.environ.setdefault("ETH_HASH_BACKEND", "pysha3")
