"""Compiled contract artifacts (ABI + bytecode): package data under gateway/chain/artifacts,
built from contracts/src by contracts/build.mjs and committed, so that every install (the
checkout, a wheel, a container image) carries them."""

from __future__ import annotations

import json
import os
from functools import cache
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any


def artifacts_dir() -> Traversable:
    """GATEWAY_ARTIFACTS_DIR (an operator's own build), else the package's."""
    if explicit := os.environ.get("GATEWAY_ARTIFACTS_DIR"):
        return Path(explicit)
    return resources.files("gateway.chain").joinpath("artifacts")


@cache
def load_artifact(name: str) -> dict[str, Any]:
    path = artifacts_dir().joinpath(f"{name}.json")
    artifact: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return artifact
