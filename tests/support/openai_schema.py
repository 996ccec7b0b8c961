"""OpenAI's own OpenAPI description as a test oracle: ``components.schemas`` validate batchery's
OpenAI-compatible objects. The YAML (87,000 lines) is read once per test session."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator

ROOT = Path(__file__).resolve().parents[2]
CANDIDATES = (
    ROOT.parent / "shared" / "openai-openapi" / "openapi.yaml",
    Path("/work/shared/openai-openapi/openapi.yaml"),
)

OUTPUT_LINE = {
    "type": "object",
    "required": ["id", "custom_id", "response", "error"],
    "additionalProperties": False,
    "properties": {
        "id": {"type": "string", "pattern": "^batch_req_"},
        "custom_id": {"type": "string"},
        "response": {
            "anyOf": [
                {"type": "null"},
                {
                    "type": "object",
                    "required": ["status_code", "request_id", "body"],
                    "additionalProperties": False,
                    "properties": {
                        "status_code": {"type": "integer"},
                        "request_id": {"type": "string"},
                        "body": {"type": "object"},
                    },
                },
            ]
        },
        "error": {
            "anyOf": [
                {"type": "null"},
                {
                    "type": "object",
                    "required": ["code", "message"],
                    "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
                },
            ]
        },
    },
}
"""A batch output or error line as OpenAI's Batch guide describes it (the spec has no schema for it)."""


def _nullable_to_31(node: Any) -> Any:
    """OpenAPI 3.0 ``nullable: true`` becomes a JSON-schema ``anyOf`` with null."""
    if isinstance(node, list):
        return [_nullable_to_31(item) for item in node]
    if not isinstance(node, dict):
        return node
    converted = {key: _nullable_to_31(value) for key, value in node.items() if key != "nullable"}
    if node.get("nullable") is True:
        return {"anyOf": [converted, {"type": "null"}]}
    return converted


@functools.cache
def _components() -> dict[str, Any]:
    for path in CANDIDATES:
        if path.exists():
            with path.open("rb") as handle:
                document = yaml.load(handle, Loader=yaml.CSafeLoader)
            components: dict[str, Any] = _nullable_to_31(
                json.loads(json.dumps(document["components"], default=str))
            )
            return components
    raise FileNotFoundError("openai-openapi/openapi.yaml not found")


@functools.cache
def _validator(name: str) -> Draft202012Validator:
    schema = {"$ref": f"#/components/schemas/{name}", "components": _components()}
    return Draft202012Validator(schema)


def without_nulls(instance: dict[str, Any]) -> dict[str, Any]:
    """Top-level null fields left out: the spec marks them optional (not nullable); the SDK reads a
    missing field and a null one alike."""
    return {key: value for key, value in instance.items() if value is not None}


def page_without_nulls(page: dict[str, Any]) -> dict[str, Any]:
    """A list page with ``without_nulls`` applied to each item."""
    return {**page, "data": [without_nulls(item) for item in page["data"]]}


def schema_errors(name: str, instance: Any) -> list[str]:
    """Problems of ``instance`` against ``components.schemas[name]`` (empty when it conforms)."""
    return [
        f"{list(error.absolute_path)}: {error.message[:300]}"
        for error in _validator(name).iter_errors(instance)
    ]


def assert_conforms(name: str, instance: Any) -> None:
    errors = schema_errors(name, instance)
    assert errors == [], f"{name}: {errors}"


def assert_output_line(line: dict[str, Any]) -> None:
    """The envelope's shape, and the body of an HTTP error against the spec's ErrorResponse."""
    errors = [error.message for error in Draft202012Validator(OUTPUT_LINE).iter_errors(line)]
    assert errors == [], errors
    assert (line["response"] is None) != (line["error"] is None), line
    response = line["response"]
    if response is not None and response["status_code"] >= 400:
        assert_conforms("ErrorResponse", response["body"])
