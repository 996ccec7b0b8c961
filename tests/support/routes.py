"""The routes an application really serves, walked from ``app.routes`` (routers included at any depth),
so tests that check every route also check the ones added later."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI
from fastapi.routing import iter_route_contexts

_PARAM = re.compile(r"{(\w+)(?::\w+)?}")


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    """The template, e.g. ``/v1/jobs/{job_id}``."""
    params: tuple[str, ...]

    def url(self, values: dict[str, str]) -> str:
        return _PARAM.sub(lambda match: values[match.group(1)], self.path)


def operations(app: FastAPI, prefix: str = "/v1") -> list[Operation]:
    """Every (method, path) under ``prefix``, HEAD and OPTIONS left out."""
    found: set[Operation] = set()
    for route in iter_route_contexts(app.routes):
        path: Any = route.path
        methods: Any = route.methods
        if not isinstance(path, str) or not path.startswith(prefix) or not methods:
            continue
        params = tuple(_PARAM.findall(path))
        for method in methods - {"HEAD", "OPTIONS"}:
            found.add(Operation(method, path, params))
    return sorted(found, key=lambda op: (op.path, op.method))
