"""The package layout (docs/development.md): one subpackage per concern, imports only running downward.

errors <- tasks <- data, model <- training <- bench, api, run.py. Checked on the source with ``ast``, so
an import inside a function counts as much as one at the top of a module.
"""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "camtl"

# What each part may import from camtl (itself always).
ALLOWED = {
    "camtl.errors": set(),
    "camtl.tasks": {"camtl.errors"},
    "camtl.data": {"camtl.errors", "camtl.tasks"},
    "camtl.model": {"camtl.errors", "camtl.tasks"},
    "camtl.training": {"camtl.errors", "camtl.tasks", "camtl.data", "camtl.model"},
    "camtl.bench": {"camtl.errors", "camtl.tasks", "camtl.data", "camtl.model", "camtl.training"},
    "camtl.api": {"camtl.errors", "camtl.tasks", "camtl.data", "camtl.model", "camtl.training"},
}
SUBPACKAGES = ("tasks", "data", "model", "training", "bench")


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def camtl_imports(path: Path) -> set[str]:
    """Every camtl module ``path`` imports; ``from camtl import x`` counts as camtl.x."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.split(".")[0] == "camtl")
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}: a relative import; camtl imports by full name"
            if node.module == "camtl":
                found.update(f"camtl.{alias.name}" for alias in node.names)
            elif node.module and node.module.split(".")[0] == "camtl":
                found.add(node.module)
    return found


def part(module: str) -> str:
    """camtl.data.features -> camtl.data; camtl (its __init__) -> camtl."""
    return ".".join(module.split(".")[:2])


MODULES = sorted(PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=lambda p: module_name(p))
def test_imports_only_run_downward(path):
    own = part(module_name(path))
    allowed = ALLOWED.get(own, set()) | {own}
    upward = {name for name in camtl_imports(path) if part(name) not in allowed and name != "camtl"}
    assert not upward, f"{module_name(path)} imports {sorted(upward)}; {own} may import {sorted(allowed)}"


def test_the_top_level_keeps_only_what_users_import():
    top = {p.name for p in PACKAGE.iterdir() if p.suffix == ".py"}
    assert top == {"__init__.py", "api.py", "errors.py"}
    packages = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists()}
    assert packages == set(SUBPACKAGES)


@pytest.mark.parametrize("name", SUBPACKAGES)
def test_each_subpackage_says_what_it_is_for_and_what_it_may_import(name):
    init = PACKAGE / name / "__init__.py"
    docstring = ast.get_docstring(ast.parse(init.read_text()))
    assert docstring, f"camtl/{name}/__init__.py has no docstring"
    assert "Imports:" in docstring, f"camtl/{name}/__init__.py does not say what it may import"
    if name != "bench":  # the benchmark programs are listed by `python -m camtl.bench --help`
        unlisted = [p.name for p in (PACKAGE / name).glob("*.py") if p.stem != "__init__"]
        unlisted = [file for file in unlisted if file.removesuffix(".py") not in docstring]
        assert not unlisted, f"camtl/{name}/__init__.py's file table misses {unlisted}"
