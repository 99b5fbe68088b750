"""The exchange package's shape: public seams only, small modules and functions."""

import ast
from pathlib import Path

import pytest

import hpcdist.exchange

PACKAGE = Path(hpcdist.exchange.__file__).parent
MODULES = sorted(PACKAGE.glob("*.py"))
MAX_LINES, MAX_FUNCTION_LINES = 300, 50


def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), filename=str(path))


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.name)
def test_no_module_uses_another_modules_private_members(path):
    """Only `self`/`cls` (or names this module defines) reach for `_private` attributes."""
    tree = _tree(path)
    bad = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            bad += [f"imports {a.name}" for a in node.names if _private(a.name)]
        elif isinstance(node, ast.Attribute) and _private(node.attr):
            owner = node.value
            if not (isinstance(owner, ast.Name) and owner.id in ("self", "cls")):
                bad.append(f"line {node.lineno}: .{node.attr}")
    assert not bad, f"{path.name}: {bad}"


def test_allreduce_and_flat_do_not_import_each_other():
    def imports(path):
        return {
            n.module for n in ast.walk(_tree(path)) if isinstance(n, ast.ImportFrom) and n.module
        }

    assert "flat" not in imports(PACKAGE / "allreduce.py")
    assert "allreduce" in imports(PACKAGE / "flat.py")  # flat builds on the exchange
    assert "allreduce" not in imports(PACKAGE / "broadcasts.py")


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.name)
def test_modules_and_functions_stay_small(path):
    tree = _tree(path)
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_LINES, f"{path.name} has {lines} lines"
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            n = node.end_lineno - node.lineno + 1
            assert n <= MAX_FUNCTION_LINES, f"{path.name}: {node.name} has {n} lines"
