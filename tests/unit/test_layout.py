"""The house plan, checked: imports point one way, packages stack by concept, modules stay small.

Each rule reads the source with ``ast`` (nothing is imported), so a violation names the file and the
import that breaks it.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
PRODUCT = ("config", "domain", "infra", "api", "workers", "simulator", "cli")
FIRST_PARTY = (*PRODUCT, "bench", "tests", "testbed")

# What each top-level package may import of batchery's own (itself always allowed).
ALLOWED: dict[str, set[str]] = {
    "config": set(),
    "domain": {"config"},
    "infra": {"config", "domain"},
    "api": {"config", "domain", "infra"},
    "workers": {"config", "domain", "infra"},
    "cli": {"config", "domain", "infra", "api", "workers", "simulator"},
    "simulator": {"config"},
    "bench": {"config", "domain", "infra", "api", "workers", "simulator", "cli", "testbed"},
    "testbed": {"config", "domain", "infra", "cli"},
}
# Inside domain/: a package may import only from packages on a lower floor (or its own).
FLOORS = {
    "storage": 0,
    "tokens": 1,
    "metrics": 1,
    "tenancy": 2,
    "budgets": 2,
    "leases": 2,
    "jobs": 3,
    "webhooks": 4,
    "batches": 5,
    "provider_batches": 6,
}
CLIENT_LIBRARIES = {"celery", "kombu", "redis", "sqlalchemy", "psycopg", "httpx", "fastapi"}
MAX_MODULE_LINES = 400


def _modules(package: str) -> Iterator[Path]:
    yield from sorted((ROOT / package).rglob("*.py"))


def _imports(path: Path) -> Iterator[tuple[int, str]]:
    """Every module a file imports, as a dotted name (``from a import b`` yields ``a`` and ``a.b``)."""
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.lineno, node.module
            for alias in node.names:
                yield node.lineno, f"{node.module}.{alias.name}"


def _where(path: Path, line: int) -> str:
    return f"{path.relative_to(ROOT)}:{line}"


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_imports_point_one_way(package: str) -> None:
    wrong = [
        f"{_where(path, line)} imports {name}"
        for path in _modules(package)
        for line, name in _imports(path)
        if (top := name.split(".")[0]) in FIRST_PARTY and top != package and top not in ALLOWED[package]
    ]
    assert wrong == []


def test_config_holds_configuration_only() -> None:
    clients = [
        f"{_where(path, line)} imports {name}"
        for path in _modules("config")
        for line, name in _imports(path)
        if name.split(".")[0] in CLIENT_LIBRARIES
    ]
    assert clients == []


def test_domain_packages_stack_bottom_up() -> None:
    upward = []
    for path in _modules("domain"):
        parts = path.relative_to(ROOT / "domain").parts
        if len(parts) < 2:
            continue
        floor = FLOORS[parts[0]]
        for line, name in _imports(path):
            target = name.split(".")
            if target[0] == "domain" and len(target) > 1 and target[1] in FLOORS:
                if target[1] != parts[0] and FLOORS[target[1]] >= floor:
                    upward.append(f"{_where(path, line)} imports {name}")
    assert upward == []


def test_every_domain_package_is_in_the_plan_and_says_what_it_may_import() -> None:
    for package in sorted(p for p in (ROOT / "domain").iterdir() if (p / "__init__.py").exists()):
        assert package.name in FLOORS, f"domain/{package.name} is not in the house plan"
        doc = ast.get_docstring(ast.parse((package / "__init__.py").read_text()))
        assert doc and "May import" in doc, f"domain/{package.name}/__init__.py lacks its plan"


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_every_top_level_package_says_what_lives_there_and_what_it_may_import(package: str) -> None:
    doc = ast.get_docstring(ast.parse((ROOT / package / "__init__.py").read_text()))
    assert doc, f"{package}/__init__.py has no docstring"
    assert "May import" in doc, f"{package}/__init__.py lacks its plan"


@pytest.mark.parametrize("package", PRODUCT)
def test_modules_stay_small(package: str) -> None:
    large = {
        str(path.relative_to(ROOT)): lines
        for path in _modules(package)
        if (lines := len(path.read_text().splitlines())) > MAX_MODULE_LINES
    }
    assert large == {}


def test_no_other_installed_distribution_provides_a_batchery_top_level_name() -> None:
    """batchery installs ``config``, ``api``, ``domain``... at the top level; nothing else may (README)."""
    providers = packages_distributions()
    others = {
        name: sorted(set(providers[name]) - {"batchery"})
        for name in PRODUCT
        if set(providers.get(name, [])) - {"batchery"}
    }
    assert others == {}


def _public_vocabulary(path: Path, *, functions: bool) -> Iterator[str]:
    """Classes, constants and type aliases (capitalised assignments) a module defines for others to
    import, and its free functions when ``functions``."""
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.ClassDef):
            name = node.name
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            if not functions:
                continue
            name = node.name
        elif (
            isinstance(node, ast.Assign | ast.AnnAssign)
            and len(targets := node.targets if isinstance(node, ast.Assign) else [node.target]) == 1
            and isinstance(targets[0], ast.Name)
            and targets[0].id[:1].isupper()
        ):
            name = targets[0].id
        else:
            continue
        if not name.startswith("_") and len(name) > 1:  # one-letter names are type variables
            yield name


def _called_through_module(path: Path) -> bool:
    """Route handlers, CLI commands and repository verbs are called through their module or router
    (``repository.fail``, ``batch_repository.fail``), so their function names may repeat across
    modules; their classes and constants may not."""
    relative = path.relative_to(ROOT)
    return (
        relative.parts[:2] == ("api", "routes")
        or relative.parts[0] == "cli"
        or path.stem.endswith("repository")
    )


def test_no_two_product_modules_export_the_same_name_for_different_things() -> None:
    seen: dict[str, list[str]] = {}
    for package in PRODUCT:
        if package == "simulator":
            continue  # an independent upstream: it may name things as the product does
        for path in _modules(package):
            for name in _public_vocabulary(path, functions=not _called_through_module(path)):
                seen.setdefault(name, []).append(str(path.relative_to(ROOT)))
    duplicated = {name: places for name, places in seen.items() if len(places) > 1}
    assert duplicated == {}
