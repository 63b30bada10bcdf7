"""SPEC 8.1, layers: a core that imports without Flask, no import cycle, one vocabulary."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

import flask_access_cors
from flask_access_cors.events import REASONS, REQUEST_TYPES
from flask_access_cors.reasons import Reason, RequestType

PACKAGE = Path(flask_access_cors.__file__).parent
CORE = ["origins", "policy", "cors", "gate", "tokens", "jwks", "decision", "scopes", "login",
        "paths", "reasons", "settings", "events"]


def run_python(script: str) -> subprocess.CompletedProcess[str]:
    """``script`` in a fresh interpreter (so nothing is imported yet); fails on a non-zero exit."""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    return done


def test_the_core_imports_with_flask_absent() -> None:
    script = (
        "import sys, json\n"
        "sys.modules['flask'] = None\n"
        f"for name in {CORE!r}:\n"
        "    __import__('flask_access_cors.' + name)\n"
        "from flask_access_cors import ConfigError\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith('flask_access_cors'))))\n"
    )
    loaded = set(json.loads(run_python(script).stdout))
    assert "flask_access_cors.extension" not in loaded
    assert {f"flask_access_cors.{name}" for name in CORE} <= loaded


def test_the_flask_layer_is_loaded_on_first_use() -> None:
    script = (
        "import sys\n"
        "import flask_access_cors\n"
        "assert 'flask_access_cors.extension' not in sys.modules\n"
        "flask_access_cors.AccessCors\n"
        "assert 'flask_access_cors.extension' in sys.modules\n"
    )
    run_python(script)


def module_graph() -> dict[str, set[str]]:
    """Every package module and the package modules it imports (``TYPE_CHECKING`` aside)."""
    modules = {
        ".".join(f.with_suffix("").relative_to(PACKAGE.parent).parts).removesuffix(".__init__"): f
        for f in PACKAGE.rglob("*.py")
    }
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        skipped = {
            id(n) for node in ast.walk(tree)
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
            for n in ast.walk(node)
        }
        base = name if path.name == "__init__.py" else name.rpartition(".")[0]
        found: set[str] = set()
        for node in ast.walk(tree):
            if id(node) in skipped:
                continue
            if isinstance(node, ast.Import):
                found.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    parts = base.split(".")
                    root = ".".join(parts[: len(parts) - node.level + 1])
                    target = f"{root}.{node.module}" if node.module else root
                else:
                    target = node.module or ""
                if node.module:
                    found.add(target)
                found.update(f"{target}.{a.name}" for a in node.names)
        graph[name] = {m for m in found if m in modules and m != name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt):], nxt]
            if nxt not in state and (cycle := visit(nxt)) is not None:
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)) is not None:
            return cycle
    return None


def test_the_module_graph_has_no_cycle() -> None:
    graph = module_graph()
    assert "flask_access_cors.decision" in graph  # the graph is really the package's
    assert find_cycle(graph) is None


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


@pytest.mark.parametrize("core", ["origins", "policy", "cors", "gate", "tokens", "decision"])
def test_core_modules_do_not_import_flask(core: str) -> None:
    tree = ast.parse((PACKAGE / f"{core}.py").read_text(encoding="utf-8"))
    imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert not {m for m in imported if m == "flask" or m.startswith("flask.")}


def test_reason_codes_and_request_types_are_one_vocabulary() -> None:
    assert set(REASONS) == {r.value for r in Reason}
    assert set(REQUEST_TYPES) == {t.value for t in RequestType}
    for reason in Reason:  # a member is its stable string wherever it is written
        assert reason == reason.value and f"{reason}" == reason.value == str(reason)
        assert json.dumps(reason) == json.dumps(reason.value)


def test_no_module_spells_a_reason_code_as_a_literal() -> None:
    codes = {r.value for r in Reason}
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        if path.name == "reasons.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and node.value in codes:
                offenders.append(f"{path.name}:{node.lineno} {node.value}")
    assert offenders == []


def test_the_cli_is_registered_through_the_flask_commands_entry_point() -> None:
    from importlib.metadata import entry_points

    from flask_access_cors.commands import cli

    found = [ep for ep in entry_points(group="flask.commands") if ep.name == "access-cors"]
    assert len(found) == 1 and found[0].load() is cli
