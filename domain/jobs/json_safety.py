"""What any JSON value from outside must be before it is stored: the same on SQLite and PostgreSQL.

Python's JSON parser accepts more than either database stores, or than a JSON answer can carry back:

- nesting deeper than ``MAX_JSON_DEPTH`` levels (deep values break serialisers and cost recursion);
- a NUL character (``\\u0000``) in a string or a key: PostgreSQL's text and ``jsonb`` refuse it;
- a lone surrogate (``\\ud800``): not encodable as UTF-8, so SQLite and the JSON answer fail on it;
- ``NaN``, ``Infinity`` or a number beyond a double (``1e309``): not JSON, refused by ``jsonb``;
- an integer outside 64 bits: outside what the upstream and the databases' integers hold.

``check_json`` walks a value once, without recursion, and raises ``InvalidRequest`` (422
``invalid_request``) whose ``param`` names the first offending place, such as ``request.messages.0``.
``text_problem`` is the check of one string, for single fields (metadata, file names).
"""

from __future__ import annotations

import math
from typing import Any

from domain.errors import InvalidRequest

MAX_JSON_DEPTH = 64
"""The deepest nesting of objects and arrays accepted: well above what real requests (structured-output
schemas included) use, well below what breaks a serialiser."""
MAX_INT = 2**63 - 1


def text_problem(value: str) -> str | None:
    """Why the string ``value`` cannot be stored, or None when it can."""
    if "\x00" in value:
        return "contains a NUL character (\\u0000), which cannot be stored"
    if not value.isascii():
        try:
            value.encode("utf-8")  # in C: far faster than searching for the surrogate range
        except UnicodeEncodeError:
            return "contains a lone surrogate (such as \\ud800), which is not valid Unicode"
    return None


def value_problem(value: object) -> str | None:
    """Why the scalar ``value`` cannot be stored, or None when it can (containers are not looked into)."""
    if isinstance(value, str):
        return text_problem(value)
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return "must be a finite number (NaN, Infinity and numbers beyond 1.8e308 are not JSON)"
    if isinstance(value, int) and not -MAX_INT - 1 <= value <= MAX_INT:
        return "is an integer outside the 64-bit range"
    return None


def check_json(value: Any, *, param: str, max_depth: int = MAX_JSON_DEPTH) -> None:
    """Raise InvalidRequest naming the first place in ``value`` that cannot be stored as JSON."""
    stack: list[tuple[Any, str, int]] = [(value, param, 0)]
    while stack:
        item, where, depth = stack.pop()
        if isinstance(item, (dict, list)):
            if depth >= max_depth:
                _refuse(where, f"is nested more than {max_depth} levels deep")
            children = item.items() if isinstance(item, dict) else enumerate(item)
            for key, child in children:
                name = f"{where}.{printable(str(key))}"
                if isinstance(key, str) and (problem := text_problem(key)) is not None:
                    _refuse(name, f"has a key that {problem}")
                stack.append((child, name, depth + 1))
        elif (problem := value_problem(item)) is not None:
            _refuse(where, problem)


def _refuse(param: str, problem: str) -> None:
    raise InvalidRequest(f"{param}: {problem}", param=param)


def printable(text: str) -> str:
    """``text`` with NUL and lone surrogates escaped, so an error naming it can be sent back."""
    if text_problem(text) is None:
        return text
    return text.encode("utf-8", "backslashreplace").decode("utf-8").replace("\x00", "\\u0000")
