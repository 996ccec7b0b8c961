"""The smallest JSON value that satisfies a JSON schema: the "answer" to structured-output requests.

It fills required properties only, takes the first branch of ``anyOf``/``oneOf`` (skipping ``null``
when another branch exists), merges ``allOf``, follows local ``$ref`` (``#/$defs/...``,
``#/definitions/...``), honours ``const``, ``enum``, ``default``, ``minimum``/``maximum``,
``minLength``/``maxLength``, ``minItems`` and common string formats. Patterns are not solved.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

_MAX_DEPTH = 32
_FORMATS = {
    "date-time": "1970-01-01T00:00:00Z",
    "date": "1970-01-01",
    "time": "00:00:00Z",
    "email": "user@example.com",
    "uri": "https://example.com/",
    "uuid": "00000000-0000-4000-8000-000000000000",
    "ipv4": "192.0.2.1",
    "ipv6": "2001:db8::1",
    "hostname": "example.com",
}


def minimal_instance(schema: object) -> Any:
    """A small value valid against ``schema`` (a decoded JSON schema)."""
    root = schema if isinstance(schema, Mapping) else {}
    return _fill(root, root, 0)


def _fill(schema: object, root: Mapping[str, Any], depth: int) -> Any:
    if not isinstance(schema, Mapping) or depth > _MAX_DEPTH:
        return None
    if "$ref" in schema:
        return _fill(_resolve(schema["$ref"], root), root, depth + 1)
    if "const" in schema:
        return schema["const"]
    enum = schema.get("enum")
    if isinstance(enum, list) and enum:
        return enum[0]
    if "default" in schema:
        return schema["default"]
    for key in ("anyOf", "oneOf"):
        branches = schema.get(key)
        if isinstance(branches, list) and branches:
            return _fill(_pick_branch(branches), root, depth + 1)
    if isinstance(schema.get("allOf"), list):
        return _fill(_merge(schema["allOf"], schema, root), root, depth + 1)
    return _fill_type(_type_of(schema), schema, root, depth)


def _fill_type(kind: str, schema: Mapping[str, Any], root: Mapping[str, Any], depth: int) -> Any:
    if kind == "object":
        properties = schema.get("properties")
        properties = properties if isinstance(properties, Mapping) else {}
        required = schema.get("required")
        names = [name for name in required if isinstance(name, str)] if isinstance(required, list) else []
        return {name: _fill(properties.get(name, {}), root, depth + 1) for name in names}
    if kind == "array":
        count = schema.get("minItems", 0)
        item = _fill(schema.get("items", {}), root, depth + 1)
        return [item for _ in range(count if isinstance(count, int) else 0)]
    if kind == "string":
        return _string(schema)
    if kind in ("integer", "number"):
        return _number(schema, kind == "integer")
    if kind == "boolean":
        return False
    return None


def _type_of(schema: Mapping[str, Any]) -> str:
    kind = schema.get("type")
    if isinstance(kind, list):
        named = [item for item in kind if isinstance(item, str) and item != "null"]
        return named[0] if named else "null"
    if isinstance(kind, str):
        return kind
    if "properties" in schema or "required" in schema:
        return "object"
    if "items" in schema:
        return "array"
    return "string"


def _pick_branch(branches: list[Any]) -> Any:
    for branch in branches:
        if not (isinstance(branch, Mapping) and branch.get("type") == "null"):
            return branch
    return branches[0]


def _merge(parts: list[Any], outer: Mapping[str, Any], root: Mapping[str, Any]) -> dict[str, Any]:
    merged: dict[str, Any] = {key: value for key, value in outer.items() if key != "allOf"}
    properties: dict[str, Any] = dict(merged.get("properties") or {})
    required: list[Any] = list(merged.get("required") or [])
    for part in parts:
        resolved = _resolve(part["$ref"], root) if isinstance(part, Mapping) and "$ref" in part else part
        if not isinstance(resolved, Mapping):
            continue
        for key, value in resolved.items():
            if key == "properties" and isinstance(value, Mapping):
                properties.update(value)
            elif key == "required" and isinstance(value, list):
                required.extend(name for name in value if name not in required)
            else:
                merged.setdefault(key, value)
    if properties:
        merged["properties"] = properties
    if required:
        merged["required"] = required
    return merged


def _resolve(reference: object, root: Mapping[str, Any]) -> object:
    if not isinstance(reference, str) or not reference.startswith("#"):
        return {}
    node: object = root
    for part in reference.lstrip("#").split("/"):
        if not part:
            continue
        key = part.replace("~1", "/").replace("~0", "~")
        node = node.get(key, {}) if isinstance(node, Mapping) else {}
    return node


def _string(schema: Mapping[str, Any]) -> str:
    formatted = _FORMATS.get(str(schema.get("format", "")))
    if formatted is not None:
        return formatted
    minimum = schema.get("minLength", 0)
    maximum = schema.get("maxLength")
    text = "sim"
    if isinstance(minimum, int) and len(text) < minimum:
        text = text + "x" * (minimum - len(text))
    if isinstance(maximum, int) and len(text) > maximum:
        text = text[:maximum]
    return text


def _number(schema: Mapping[str, Any], integer: bool) -> int | float:
    step = 1 if integer else 0.5
    value: float = 0
    bounds = {key: schema.get(key) for key in ("minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum")}
    numbers = {
        key: bound
        for key, bound in bounds.items()
        if isinstance(bound, int | float) and not isinstance(bound, bool)
    }
    if "minimum" in numbers and value < numbers["minimum"]:
        value = numbers["minimum"]
    if "exclusiveMinimum" in numbers and value <= numbers["exclusiveMinimum"]:
        value = numbers["exclusiveMinimum"] + step
    if "maximum" in numbers and value > numbers["maximum"]:
        value = numbers["maximum"]
    if "exclusiveMaximum" in numbers and value >= numbers["exclusiveMaximum"]:
        value = numbers["exclusiveMaximum"] - step
    if integer:
        return int(-(-value // 1))
    return float(value)
