"""What build is running: package version and source commit, for gateway_build_info."""

from __future__ import annotations

import os
import subprocess
from functools import cache
from importlib import metadata
from pathlib import Path


@cache
def build_version() -> str:
    try:
        return metadata.version("gateway")
    except metadata.PackageNotFoundError:
        return "0+unknown"


@cache
def build_commit() -> str:
    """GATEWAY_BUILD_COMMIT (set by image builds), else the checkout's HEAD, else unknown."""
    if commit := os.environ.get("GATEWAY_BUILD_COMMIT"):
        return commit[:40]
    try:
        result = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"],  # noqa: S607  # git from PATH
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=2,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return result.stdout.strip() or "unknown"
