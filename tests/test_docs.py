"""The README stays short and every link in it and in docs/ resolves to a file; the
generated configuration and metrics pages match the code; every metric family the registry
exports is on the metrics page."""

from __future__ import annotations

import re
from pathlib import Path

from prometheus_client import CollectorRegistry

from gateway.telemetry.metrics import Metrics
from tests.helpers.modules import load_script

ROOT = Path(__file__).resolve().parents[1]
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


def _build():
    return load_script(ROOT / "docs" / "build.py", "docs_build")


def test_the_readme_is_short():
    assert len((ROOT / "README.md").read_text().splitlines()) <= 250


def test_every_link_resolves_to_a_file():
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "bench/README.md"]
    broken = []
    for page in pages:
        for target in LINK.findall(page.read_text()):
            if target.startswith(("http://", "https://", "mailto:")):
                continue
            if not (page.parent / target).exists():
                broken.append(f"{page.relative_to(ROOT)}: {target}")
    assert broken == []


def test_generated_pages_match_the_code():
    for name, text in _build().render().items():
        assert (ROOT / "docs" / name).read_text() == text, f"run make docs ({name} is stale)"


def test_the_metrics_page_names_every_exported_family():
    registry = CollectorRegistry()
    Metrics(registry)
    exported = set()
    for family in registry.collect():
        suffix = {"counter": "_total", "info": "_info"}.get(family.type, "")
        exported.add(family.name + suffix)
    page = (ROOT / "docs" / "metrics.md").read_text()
    listed = set(re.findall(r"^\| `(gateway_[a-z_]+)`", page, re.MULTILINE))
    assert exported - listed == set()
    assert listed - exported == set()
