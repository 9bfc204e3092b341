"""Alert rules pass promtool; dashboards are what grafana/build.py makes and name only
metrics the gateway exports."""

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from gateway.telemetry import Metrics
from tests.helpers.modules import load_script

ROOT = Path(__file__).resolve().parents[2]
OBSERVABILITY = ROOT / "observability"
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None and "CI" not in os.environ,  # in CI a missing promtool fails, not skips
    reason="promtool not installed (make test installs it)",
)

_FUNCTIONS = {
    "sum",
    "rate",
    "increase",
    "histogram_quantile",
    "max",
    "min",
    "clamp_min",
    "time",
    "by",
    "label_values",
    "up",
    "le",
    "without",
    "avg",
    "count",
    "or",
    "and",
    "unless",
    "vector",
    "on",
    "ignoring",
}


def exported_names() -> set[str]:
    registry = Metrics.create(version="t", commit="t").registry
    names = set()
    for family in registry.collect():
        names.add(family.name)
        names.update(sample.name for sample in family.samples)
        names.update(
            f"{family.name}{suffix}" for suffix in ("_total", "_bucket", "_count", "_sum", "_info")
        )
    return names | {"up"}


def dashboard_exprs() -> list[tuple[str, str, str]]:
    found = []
    for path in sorted((ROOT / "grafana" / "dashboards").glob("*.json")):
        board = json.loads(path.read_text())
        for panel in board["panels"]:
            found += [
                (path.name, panel["title"], target["expr"]) for target in panel.get("targets", [])
            ]
    return found


def metric_names(expr: str) -> set[str]:
    without_strings = re.sub(r'"[^"]*"', "", expr)
    without_labels = re.sub(r"\{[^}]*\}", "", without_strings)
    without_ranges = re.sub(r"\[[^\]]*\]", "", without_labels)
    without_ranges = re.sub(r"\b\d+(\.\d+)?(e[-+]?\d+)?\b", "", without_ranges)  # numbers
    return {
        token
        for token in re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", without_ranges)
        if token not in _FUNCTIONS
        and not token.startswith("__")
        and token
        not in {
            "instance",
            "route",
            "upstream",
            "outcome",
            "method",
            "status",
            "tier",
            "type",
            "result",
            "version",
            "commit",
            "tag",
            "e",
            "job",
            "kind",
        }
    }


@needs_promtool
def test_rules_check_and_unit_tests_pass():
    check = subprocess.run(
        [PROMTOOL, "check", "rules", "alerts.yml"],
        cwd=OBSERVABILITY,
        capture_output=True,
        text=True,
        check=False,
    )
    assert check.returncode == 0, check.stdout + check.stderr
    tests = subprocess.run(
        [PROMTOOL, "test", "rules", "alerts_test.yml"],
        cwd=OBSERVABILITY,
        capture_output=True,
        text=True,
        check=False,
    )
    assert tests.returncode == 0, tests.stdout + tests.stderr
    config = subprocess.run(
        [PROMTOOL, "check", "config", "--syntax-only", "prometheus.yml"],
        cwd=OBSERVABILITY,
        capture_output=True,
        text=True,
        check=False,
    )
    assert config.returncode == 0, config.stdout + config.stderr


def test_every_alert_has_a_test_and_a_runbook():
    rules = [
        r
        for g in yaml.safe_load((OBSERVABILITY / "alerts.yml").read_text())["groups"]
        for r in g["rules"]
    ]
    tested = {
        check["alertname"]
        for case in yaml.safe_load((OBSERVABILITY / "alerts_test.yml").read_text())["tests"]
        for check in case["alert_rule_test"]
        if check.get("exp_alerts")
    }
    for rule in rules:
        assert rule["alert"] in tested, f"{rule['alert']} has no firing test"
        assert len(rule["annotations"]["runbook"]) > 40


def test_dashboards_are_generated_from_build_py():
    build = load_script(ROOT / "grafana" / "build.py", "grafana_build")
    for name, text in build.render().items():
        assert (ROOT / "grafana" / "dashboards" / name).read_text() == text, (
            f"run python grafana/build.py ({name} is stale)"
        )


def test_dashboards_name_only_exported_metrics_and_have_variables():
    exported = exported_names()
    exprs = dashboard_exprs()
    assert len(exprs) >= 30
    for board, title, expr in exprs:
        unknown = metric_names(expr) - exported
        assert not unknown, f"{board} / {title}: {unknown}"
    for path in (ROOT / "grafana" / "dashboards").glob("*.json"):
        board = json.loads(path.read_text())
        assert "instance" in {v["name"] for v in board["templating"]["list"]}
    overview = json.loads((ROOT / "grafana" / "dashboards" / "overview.json").read_text())
    assert any(t["exemplar"] for p in overview["panels"] for t in p["targets"])
    datasources = yaml.safe_load(
        (ROOT / "grafana" / "provisioning" / "datasources" / "datasources.yaml").read_text()
    )
    prometheus = next(d for d in datasources["datasources"] if d["uid"] == "prometheus")
    assert prometheus["jsonData"]["exemplarTraceIdDestinations"][0]["datasourceUid"] == "tempo"
