"""Compiled contract artifacts (ABI + bytecode) committed under contracts/artifacts."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

ARTIFACTS_DIR = Path(__file__).resolve().parents[2] / "contracts" / "artifacts"


@cache
def load_artifact(name: str) -> dict[str, Any]:
    path = ARTIFACTS_DIR / f"{name}.json"
    artifact: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return artifact
