"""Safe by construction: every domain function that reads or writes a tenant's data must be told the
tenant, by name. A forgotten argument is a TypeError, never a quiet read of the default tenant."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import domain

pytestmark = pytest.mark.unit


def _domain_functions() -> Iterator[tuple[str, Callable[..., Any]]]:
    for module_info in pkgutil.walk_packages(domain.__path__, prefix="domain."):
        module = importlib.import_module(module_info.name)
        for name, value in vars(module).items():
            if name.startswith("_") or getattr(value, "__module__", None) != module.__name__:
                continue
            if inspect.isfunction(value):
                yield f"{module.__name__}.{name}", value
            elif inspect.isclass(value):
                for method_name, method in vars(value).items():
                    if inspect.isfunction(method) and not method_name.startswith("_"):
                        yield f"{module.__name__}.{name}.{method_name}", method


def test_the_walk_finds_the_repositories() -> None:
    names = {name for name, _ in _domain_functions()}
    assert {"domain.jobs.repository.get_job", "domain.batches.repository.get"} <= names


def test_tenant_id_is_a_required_keyword_everywhere() -> None:
    wrong = []
    for name, function in _domain_functions():
        parameter = inspect.signature(function).parameters.get("tenant_id")
        if parameter is None:
            continue
        if parameter.kind is not inspect.Parameter.KEYWORD_ONLY:
            wrong.append(f"{name}: tenant_id is {parameter.kind.description}, not keyword-only")
        if parameter.default is not inspect.Parameter.empty:
            wrong.append(f"{name}: tenant_id defaults to {parameter.default!r}")
    assert wrong == []


def test_new_job_rows_need_their_tenant() -> None:
    from domain.jobs.repository import NewJob

    field = inspect.signature(NewJob).parameters["tenant_id"]
    assert field.default is inspect.Parameter.empty
