"""Keccak-256 runs on safe-pysha3's C extension, not pycryptodome's slower cffi binding."""

from __future__ import annotations

import os
import subprocess
import sys

PROBE = """
import gateway
from eth_hash.auto import keccak
assert keccak(b"").hex() == "c5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470"
print(type(keccak._backend.keccak256.__self__).__name__)
"""


def test_importing_the_gateway_selects_the_c_keccak_backend() -> None:
    env = {k: v for k, v in os.environ.items() if k != "ETH_HASH_BACKEND"}
    out = subprocess.run(
        [sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "PySha3Backend"


def test_an_operator_choice_of_backend_is_kept() -> None:
    env = {**os.environ, "ETH_HASH_BACKEND": "pycryptodome"}
    out = subprocess.run(
        [sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "CryptodomeBackend"


def test_child_processes_do_not_inherit_the_choice() -> None:
    env = {k: v for k, v in os.environ.items() if k != "ETH_HASH_BACKEND"}
    probe = "import os, gateway; print(os.environ.get('ETH_HASH_BACKEND'))"
    out = subprocess.run(
        [sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "None"
