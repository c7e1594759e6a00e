"""`generation` never depends on `comparisons`: the dependency runs one way (comparisons → generation).

Checked statically, on every module of the package (migrations, commands and imports inside functions
or under TYPE_CHECKING included), so a lazy import that no test happens to run is caught too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "generation"
FORBIDDEN = "comparisons"


def imported_modules(source: str, *, package: str) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import statement in ``source``, relative ones resolved."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            found.append((node.lineno, module))
            found += [(node.lineno, f"{module}.{alias.name}") for alias in node.names]
        elif (
            isinstance(node, ast.Call)
            and ast.unparse(node.func) in {"import_module", "importlib.import_module"}
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            found.append((node.lineno, node.args[0].value))
    return found


def _is_forbidden(module: str) -> bool:
    return module == FORBIDDEN or module.startswith(f"{FORBIDDEN}.")


def test_no_module_of_generation_imports_comparisons() -> None:
    modules = sorted(PACKAGE.rglob("*.py"))
    assert len(modules) > 20  # the walk found the package
    offending = []
    for path in modules:
        package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
        for line, module in imported_modules(path.read_text(), package=package):
            if _is_forbidden(module):
                offending.append(f"{path.relative_to(ROOT)}:{line} imports {module}")
    assert not offending, "generation must not depend on comparisons:\n" + "\n".join(offending)


def test_no_generation_migration_depends_on_a_comparisons_migration() -> None:
    for path in sorted((PACKAGE / "migrations").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Tuple) and node.elts and isinstance(node.elts[0], ast.Constant):
                assert node.elts[0].value != FORBIDDEN, f"{path.relative_to(ROOT)} depends on a comparisons migration"


@pytest.mark.parametrize(
    ("source", "package"),
    [
        ("from comparisons.models import Vote", "generation"),
        ("import comparisons", "generation"),
        ("def later():\n    from comparisons import services\n", "generation.management.commands"),
        ("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import comparisons.stats\n", "generation"),
        ("importlib.import_module('comparisons.selectors')", "generation"),
    ],
)
def test_the_check_catches_every_form_of_import(source: str, package: str) -> None:
    assert any(_is_forbidden(module) for _, module in imported_modules(source, package=package))


def test_the_check_lets_generation_import_its_own_modules() -> None:
    source = "from generation.models import Prompt\nfrom . import prompting\nimport numpy\n"
    assert not any(_is_forbidden(module) for _, module in imported_modules(source, package="generation"))
