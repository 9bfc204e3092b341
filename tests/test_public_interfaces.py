"""gateway/ uses its libraries through their documented interfaces only.

Walks the AST of every module of gateway/ and reports:
- an access to a ``_``-prefixed attribute of an object that is not the class's own
  (``driver._conn``, ``server._kwargs``): a name no module of gateway/ defines;
- in a class that subclasses a library's class, a ``self._x`` or a method ``_x`` that the
  library's class has (its private state read, written or overridden);
- an import from one of aiohttp's modules outside its documented API
  (``aiohttp.web_protocol``, ``aiohttp.http_parser``, …);
- an import of any library's private module or name (``eth_account._utils…``,
  ``from eth_account.messages import _hash_eip191_message``).

Patch releases rename private names (aiohttp did in 3.10.2, 3.10.3, 3.10.6 and 3.14): a
test here fails at once rather than a user's request at run time.
"""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

GATEWAY = Path(__file__).resolve().parents[1] / "gateway"
# aiohttp's documented modules: the package, the server, the client, the ABCs, header
# names and the typing aliases its docs use.
AIOHTTP_PUBLIC = {
    "aiohttp",
    "aiohttp.web",
    "aiohttp.abc",
    "aiohttp.hdrs",
    "aiohttp.typedefs",
    "aiohttp.http",
}


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def defined_private_names(trees: dict[str, ast.Module]) -> set[str]:
    """Every ``_name`` the project defines: functions, methods, class attributes, slots,
    and attributes assigned on ``self``."""
    names: set[str] = set()
    for tree in trees.values():
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                names.add(node.name)
            elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
                names.add(node.attr)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                names.add(node.id)
            elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                names.add(node.target.id)
            elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                names.add(node.value)  # __slots__ entries
    return {name for name in names if _private(name)}


def _library_private_names(module: str, class_name: str) -> set[str]:
    """The ``_``-prefixed names of the library classes a gateway class inherits from."""
    cls = getattr(importlib.import_module(module), class_name, None)
    if cls is None:
        return set()
    names: set[str] = set()
    for base in cls.__mro__[1:]:
        if base.__module__.split(".")[0] in {"gateway", "builtins"}:
            continue
        names.update(name for name in vars(base) if _private(name))
        slots = vars(base).get("__slots__", ())
        names.update(s for s in ((slots,) if isinstance(slots, str) else slots) if _private(s))
    return names


def violations(trees: dict[str, ast.Module]) -> list[str]:
    """``trees``: module name -> AST. Each violation as ``module:line: what``."""
    own = defined_private_names(trees)
    found = []
    for module, tree in trees.items():
        for node in ast.walk(tree):
            found += [f"{module}:{node.lineno}: {what}" for what in _import_violations(node)]
            if isinstance(node, ast.Attribute) and _private(node.attr):
                is_self = isinstance(node.value, ast.Name) and node.value.id in {"self", "cls"}
                if not is_self and node.attr not in own:
                    found.append(f"{module}:{node.lineno}: {ast.unparse(node)}")
            elif isinstance(node, ast.ClassDef) and node.bases:
                found += _subclass_violations(module, node)
    return found


def _private_module(name: str) -> bool:
    return not name.startswith("gateway") and any(_private(part) for part in name.split("."))


def _import_violations(node: ast.AST) -> list[str]:
    if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
        if node.module.startswith("aiohttp") and node.module not in AIOHTTP_PUBLIC:
            return [f"import from {node.module}"]
        if _private_module(node.module):
            return [f"import from {node.module}"]
        if not node.module.startswith("gateway"):
            return [
                f"import {alias.name} from {node.module}"
                for alias in node.names
                if _private(alias.name)
            ]
    elif isinstance(node, ast.Import):
        return [
            f"import {alias.name}"
            for alias in node.names
            if (alias.name.startswith("aiohttp.") and alias.name not in AIOHTTP_PUBLIC)
            or _private_module(alias.name)
        ]
    return []


def _subclass_violations(module: str, cls: ast.ClassDef) -> list[str]:
    try:
        theirs = _library_private_names(module, cls.name)
    except ImportError:  # a snippet under test, not an importable module
        theirs = set()
    found = []
    for node in ast.walk(cls):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name in theirs:
            found.append(f"{module}:{node.lineno}: {cls.name} overrides {node.name}")
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id == "self"
            and node.attr in theirs
        ):
            found.append(f"{module}:{node.lineno}: {cls.name} uses self.{node.attr}")
    return found


def _gateway_trees() -> dict[str, ast.Module]:
    trees = {}
    for path in sorted(GATEWAY.rglob("*.py")):
        relative = path.relative_to(GATEWAY.parent).with_suffix("")
        name = ".".join(relative.parts).removesuffix(".__init__")
        trees[name] = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    return trees


def test_gateway_reads_no_library_private_state():
    found = {re.sub(r":\d+:", ":", item) for item in violations(_gateway_trees())}
    assert found == set()


def test_the_check_finds_each_kind_of_violation():
    snippet = ast.parse(
        "from aiohttp import web\n"
        "from aiohttp.web_protocol import RequestHandler\n"
        "import aiohttp.http_parser\n"
        "from eth_account._utils.signing import sign_transaction_dict\n"
        "from eth_account.messages import _hash_eip191_message\n"
        "def f(server):\n"
        "    return server._kwargs\n"
        "class Runner(web.AppRunner):\n"
        "    async def _make_server(self):\n"
        "        return self._server\n"
    )
    trees = {**_gateway_trees(), "gateway.snippet": snippet}
    found = violations(trees)
    assert "gateway.snippet:2: import from aiohttp.web_protocol" in found
    assert "gateway.snippet:3: import aiohttp.http_parser" in found
    assert "gateway.snippet:4: import from eth_account._utils.signing" in found
    assert "gateway.snippet:5: import _hash_eip191_message from eth_account.messages" in found
    assert "gateway.snippet:7: server._kwargs" in found
    # A class the test can import: subclass checks need the real base.
    runner = violations({"gateway.lane.protocol": ast.parse(
        "class GatewayRunner(web.AppRunner):\n"
        "    async def _make_server(self):\n"
        "        return self._server\n"
        "    def shutdown(self):\n"
        "        return self._handle_signals\n"
    )})  # fmt: skip
    assert any("overrides _make_server" in item for item in runner), runner
    assert any("uses self._server" in item for item in runner), runner
    assert any("uses self._handle_signals" in item for item in runner), runner
