"""Imports the linter cannot see: only the composition root loads modules by name.

import-linter follows `import` statements; a module loaded with `importlib.import_module`
or `__import__` is invisible to its contracts (pyproject.toml [tool.importlinter]). The
composition root (app.py, cli.py) and Alembic's env.py discover contexts' rooms by name;
everything else imports what it uses. `importlib.resources` and `importlib.metadata` are
fine anywhere.
"""

from __future__ import annotations

import ast
from pathlib import Path

import staybook

SRC = Path(staybook.__file__).parent
COMPOSITION_ROOT = {"app.py", "cli.py", "migrations/env.py"}
ALLOWED_PARTS = {"resources", "metadata"}


def hidden_imports(tree: ast.AST) -> list[str]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                top, _, part = alias.name.partition(".")
                if top == "importlib" and part.split(".")[0] not in ALLOWED_PARTS:
                    found.append(f"import {alias.name}")
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "importlib":
            rest = node.module.split(".")[1:]
            names = [a.name for a in node.names] if not rest else rest[:1]
            found += [f"from {node.module} import {n}" for n in names if n not in ALLOWED_PARTS]
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "__import__":
            found.append("__import__(...)")
    return found


def test_only_the_composition_root_loads_modules_by_name():
    offenders = {}
    for path in sorted(SRC.rglob("*.py")):
        relative = path.relative_to(SRC).as_posix()
        if relative in COMPOSITION_ROOT:
            continue
        found = hidden_imports(ast.parse(path.read_text(encoding="utf-8")))
        if found:
            offenders[relative] = found
    assert offenders == {}


def test_the_scan_sees_each_way_of_loading_by_name():
    source = "import importlib\nfrom importlib import import_module\n__import__('x')\nimport importlib.util\n"
    assert sorted(hidden_imports(ast.parse(source))) == [
        "__import__(...)", "from importlib import import_module", "import importlib", "import importlib.util",
    ]  # fmt: skip
    allowed = "from importlib import resources\nimport importlib.metadata\nfrom importlib.resources import files\n"
    assert hidden_imports(ast.parse(allowed)) == []
