"""Compiled contract artifacts (ABI + bytecode) committed under contracts/artifacts."""

from __future__ import annotations

import json
import os
from functools import cache
from pathlib import Path
from typing import Any

ARTIFACTS_DIR = Path(__file__).resolve().parents[2] / "contracts" / "artifacts"


def artifacts_dir() -> Path:
    """GATEWAY_ARTIFACTS_DIR, else this checkout's contracts/artifacts, else the cwd's."""
    if explicit := os.environ.get("GATEWAY_ARTIFACTS_DIR"):
        return Path(explicit)
    if ARTIFACTS_DIR.is_dir():
        return ARTIFACTS_DIR
    return Path.cwd() / "contracts" / "artifacts"


@cache
def load_artifact(name: str) -> dict[str, Any]:
    path = artifacts_dir() / f"{name}.json"
    artifact: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return artifact
