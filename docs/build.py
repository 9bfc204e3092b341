"""Generates docs/configuration.md and docs/metrics.md from the code (`make docs`).

The settings page walks the pydantic models of ``gateway/config.py``: every key, its
environment variable(s), type and default, and the comment written above the field in the
source. The metrics page reads every family ``gateway/telemetry/metrics.py`` declares (name,
kind, labels, help text). ``tests/test_docs.py`` regenerates both and fails when they drift.
"""

from __future__ import annotations

import ast
import inspect
import json
import sys
import types
import typing
from pathlib import Path

from pydantic import BaseModel, SecretStr
from pydantic.fields import FieldInfo

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gateway import config
from gateway.telemetry import metrics

OUT = ROOT / "docs"
_KINDS = {
    "Counter": "counter",
    "FastCounter": "counter",
    "Gauge": "gauge",
    "Histogram": "histogram",
    "FastHistogram": "histogram",
    "Info": "info",
}


# --- settings -------------------------------------------------------------------------


def _comments(model: type[BaseModel]) -> dict[str, str]:
    """Field name -> the comment lines right above it (and one at the end of its line)."""
    try:
        lines, _ = inspect.getsourcelines(model)
    except (OSError, TypeError):
        return {}
    tree = ast.parse("".join(lines))
    found: dict[str, str] = {}
    body = next(node for node in ast.walk(tree) if isinstance(node, ast.ClassDef)).body
    for node in body:
        if not isinstance(node, ast.AnnAssign) or not isinstance(node.target, ast.Name):
            continue
        above = []
        index = node.lineno - 2
        while index >= 0 and lines[index].strip().startswith("#"):
            above.insert(0, lines[index].strip().lstrip("#").strip())
            index -= 1
        own = lines[node.lineno - 1]
        if "  # " in own and "noqa" not in own.split("  # ", 1)[1]:
            above.append(own.split("  # ", 1)[1].strip())
        found[node.target.id] = " ".join(above)
    return found


def _is_model(annotation: object) -> type[BaseModel] | None:
    return (
        annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None
    )


def _type_name(annotation: object) -> str:  # noqa: PLR0911  # one exit per kind of type
    """A reader's name for a field's type: ``int``, ``list of str``, ``one of a, b``."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Annotated:
        return _type_name(args[0])
    if origin is typing.Literal:
        return "one of " + ", ".join(f"`{arg}`" for arg in args)
    if origin in (typing.Union, types.UnionType):
        named = [_type_name(arg) for arg in args if arg is not type(None)]
        return " or ".join(named) + (" (optional)" if type(None) in args else "")
    if origin in (tuple, list, frozenset, set):
        return "list of " + _type_name(args[0]) if args else "list"
    if origin is dict:
        return f"table of {_type_name(args[1])}" if len(args) == 2 else "table"
    if annotation is SecretStr:
        return "secret"
    if isinstance(annotation, type):
        return {"str": "text", "float": "number", "int": "integer", "bool": "boolean"}.get(
            annotation.__name__, annotation.__name__
        )
    return str(annotation)


def _default(field: FieldInfo) -> str:  # noqa: PLR0911  # one exit per kind of value
    if field.is_required():
        return "required"
    value = field.get_default(call_default_factory=True)
    if isinstance(value, BaseModel):
        return ""
    if isinstance(value, SecretStr):
        return "(secret)"
    if value is None or value in ((), {}):
        return "none"
    if isinstance(value, Path):
        return f"`{value}`"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, float) and value.is_integer():
        return f"`{int(value)}`"
    if isinstance(value, tuple | list | dict):
        text = json.dumps(list(value) if isinstance(value, tuple) else value)
        return f"`{text}`" if len(text) <= 80 else f"{len(value)} entries (`gateway check-config`)"
    return f"`{value}`"


def _environment(dotted: str) -> str:
    names = [f"`GATEWAY_{dotted.upper().replace('.', '__')}`"]
    names += [f"`{name}`" for name, path in config.ENV_ALIASES.items() if path == dotted]
    names += [f"`{name}`" for name, path in config.OTEL_ENV.items() if path == dotted]
    return ", ".join(dict.fromkeys(names))


def _rows(
    model: type[BaseModel], prefix: str, *, environment: bool = True
) -> list[tuple[str, list[str]]]:
    """(section, rows) for ``model`` and each of its sub-models, depth first."""
    comments = _comments(model)
    rows: list[str] = []
    sections: list[tuple[str, list[str]]] = []
    for name, field in model.model_fields.items():
        dotted = f"{prefix}{name}"
        sub = _is_model(field.annotation)
        if sub is not None:
            sections += _rows(sub, f"{dotted}.", environment=environment)
            continue
        items = typing.get_args(field.annotation)
        if typing.get_origin(field.annotation) is tuple and items and _is_model(items[0]):
            sections += _rows(items[0], f"{dotted}[].", environment=False)
        described = comments.get(name, "").replace("|", "\\|")
        rows.append(
            f"| `{dotted}` | {_environment(dotted) if environment else '(in the list)'} "
            f"| {_type_name(field.annotation)} "
            f"| {_default(field)} | {described} |"
        )
    title = prefix.rstrip(".") or "top level"
    return [(title, rows), *sections] if rows else sections


def _section_model(title: str) -> type[BaseModel]:
    model: type[BaseModel] = config.Settings
    if title == "top level":
        return BaseModel
    for part in title.split("."):
        annotation = model.model_fields[part.removesuffix("[]")].annotation
        if part.endswith("[]"):
            annotation = typing.get_args(annotation)[0]
        model = _is_model(annotation) or model
    return model


def configuration() -> str:
    out = [
        "# Configuration reference",
        "",
        "<!-- generated by `make docs` from gateway/config.py: do not edit by hand -->",
        "",
        "Settings come from a TOML file (`gateway serve --config FILE`), then the environment,",
        "which wins: every key is `GATEWAY_<SECTION>__<KEY>`, lists and tables as JSON",
        "(`GATEWAY_RPC__ANONYMOUS__ALLOW='[\"eth_chainId\"]'`); the common keys have short",
        "names too. `gateway check-config` prints the effective settings, secrets masked, and",
        "names each bad key. `upstreams` are `[[upstreams]]` tables (`url`, `ws_url`,",
        "`weight`, `name`, `timeout_s`) or, in `GATEWAY_UPSTREAMS`, comma-separated URLs",
        "(`http://a:8545|ws://a:8546` pairs a WebSocket URL).",
        "",
    ]
    for title, rows in _rows(config.Settings, ""):
        doc = inspect.getdoc(_section_model(title)) or ""
        out += [f"## `{title}`", ""]
        if doc and doc != inspect.getdoc(BaseModel):
            out += [doc.replace("\n", " "), ""]
        out += ["| key | environment | type | default | |", "| --- | --- | --- | --- | --- |"]
        out += rows
        out.append("")
    return "\n".join(out)


# --- metrics --------------------------------------------------------------------------


def metric_families() -> list[tuple[str, str, list[str], str]]:
    """(exposed name, kind, labels, help) of each family metrics.py declares, in order."""
    tree = ast.parse(inspect.getsource(metrics))
    found = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)):
            continue
        kind = _KINDS.get(node.func.id)
        if kind is None or not node.args or not isinstance(node.args[0], ast.Constant):
            continue
        name = node.args[0].value
        if not isinstance(name, str) or not name.startswith("gateway_"):
            continue
        help_text = node.args[1].value if len(node.args) > 1 else ""
        labels: list[str] = []
        if len(node.args) > 2 and isinstance(node.args[2], ast.List | ast.Tuple):
            labels = [element.value for element in node.args[2].elts]  # type: ignore[attr-defined]
        for keyword in node.keywords:
            if keyword.arg == "labelnames" and isinstance(keyword.value, ast.List | ast.Tuple):
                labels = [element.value for element in keyword.value.elts]  # type: ignore[attr-defined]
        exposed = {"counter": f"{name}_total", "info": f"{name}_info"}.get(kind, name)
        found.append((exposed, kind, labels, str(help_text)))
    return sorted(found, key=lambda family: family[0])


def metrics_page() -> str:
    out = [
        "# Metrics reference",
        "",
        "<!-- generated by `make docs` from gateway/telemetry/metrics.py: do not edit by hand -->",
        "",
        "Every family `GET /metrics` exports (Prometheus text format; OpenMetrics with",
        "trace-id exemplars when the scraper asks for it). The dashboards in",
        "`grafana/dashboards/` and the alerts in `observability/alerts.yml` use only these.",
        "",
        "| metric | kind | labels | |",
        "| --- | --- | --- | --- |",
    ]
    for name, kind, labels, help_text in metric_families():
        shown = ", ".join(f"`{label}`" for label in labels)
        described = help_text.replace("|", "\\|")
        out.append(f"| `{name}` | {kind} | {shown} | {described} |")
    out.append("")
    return "\n".join(out)


def render() -> dict[str, str]:
    return {"configuration.md": configuration(), "metrics.md": metrics_page()}


def main() -> None:
    for name, text in render().items():
        (OUT / name).write_text(text, encoding="utf-8")
        print(f"wrote {OUT / name}")


if __name__ == "__main__":
    main()
