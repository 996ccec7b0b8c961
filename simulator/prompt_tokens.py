"""Prompt tokens of a request, counted the way the hosted APIs count them.

Text is tokenized with the model's real encoding (``o200k_base`` for gpt-4o, gpt-4.1, gpt-5, the
o-series and gpt-image; ``cl100k_base`` for gpt-4, gpt-3.5 and the embedding models), from the encoding
files that the ``bpe-openai`` package ships: nothing is downloaded. Only its compiled extension is
loaded, not its Python wrapper, whose import parses a whole encoding file in Python.

On top of the text, following OpenAI's cookbook for chat:

- each message costs 3 tokens of framing plus the tokens of each of its fields: the role, the content,
  ``name`` (one token more), and any other field as its compact JSON (``tool_calls``...); a content
  part that is neither text nor an image counts as its compact JSON; the reply is primed with 3 tokens;
- function definitions render as a compact block: per function 7 tokens (10 on cl100k_base models) plus
  ``"name:description"``; with properties 3, then per property 3 plus ``"key:type:description"`` (an
  ``enum`` adds -3, then 3 plus the value per value), any other keyword of the property as compact
  JSON; 12 once after the functions. Tools that are not functions count as their compact JSON;
- ``response_format`` (chat) and ``text`` (Responses) count as their compact JSON; Responses
  ``instructions`` count as a message without a role, and a string ``input`` as a user message.

Images are priced by the endpoint while it validates them (``simulator.tokens.image_tokens``), so an
image part counts 0 here. The request has been validated by the endpoint before it is counted.
"""

from __future__ import annotations

import functools
import importlib.machinery
import importlib.util
import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

MESSAGE_FRAMING = 3
NAME_EXTRA = 1
REPLY_PRIMING = 3
_O200K_MODELS = (
    "gpt-4o",
    "chatgpt-4o",
    "gpt-4.1",
    "gpt-4.5",
    "gpt-5",
    "gpt-oss",
    "gpt-image",
    "o1",
    "o3",
    "o4",
    "computer-use",
)
_RECIPE_KEYS = ("type", "description", "enum")
_TEXT_FIELDS = {"text": "text", "input_text": "text", "output_text": "text", "refusal": "refusal"}
_IMAGE_PARTS = frozenset({"image_url", "input_image"})


class _Tokenizer(Protocol):
    def count(self, text: str) -> int: ...


def encoding_for(model: str) -> str:
    """The name of the encoding ``model`` uses."""
    name = model.lower().removeprefix("ft:").rsplit("/", 1)[-1]
    return "o200k_base" if name.startswith(_O200K_MODELS) else "cl100k_base"


def _extension() -> Any:
    name = "bpe_openai._bindings"
    if name not in sys.modules:
        package = importlib.util.find_spec("bpe_openai")
        folders = package.submodule_search_locations if package is not None else None
        path = next(
            Path(folder) / f"_bindings{suffix}"
            for folder in folders or ()
            for suffix in importlib.machinery.EXTENSION_SUFFIXES
            if (Path(folder) / f"_bindings{suffix}").is_file()
        )
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            raise ImportError(f"cannot load {path}")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        sys.modules[name] = module
    return sys.modules[name]


@functools.cache
def _tokenizer(encoding: str) -> _Tokenizer:
    tokenizer: _Tokenizer = _extension().tokenizer_for_encoding(encoding)
    return tokenizer


def load_encodings() -> None:
    """Load both encodings now, so that the first request does not wait for them."""
    _tokenizer("o200k_base")
    _tokenizer("cl100k_base")


def compact(value: object) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)


def count_tokens(text: str, model: str) -> int:
    """Tokens of ``text`` in ``model``'s encoding."""
    if not text:
        return 0
    tokenizer = _tokenizer(encoding_for(model))
    try:
        return tokenizer.count(text)
    except Exception:  # lone surrogates: counted as their replacement characters
        return tokenizer.count(text.encode("utf-8", "replace").decode("utf-8"))


class PromptCounter:
    """Counts the text of one request's prompt for ``model``."""

    def __init__(self, model: str) -> None:
        self.model = model

    def text(self, text: str) -> int:
        return count_tokens(text, self.model)

    def json(self, value: object) -> int:
        return 0 if value is None else self.text(compact(value))

    def content(self, content: Any) -> int:
        """A validated content: None, a string, or a list of parts."""
        if content is None:
            return 0
        if isinstance(content, str):
            return self.text(content)
        total = 0
        for part in content:
            kind = part.get("type")
            if kind in _TEXT_FIELDS:
                total += self.text(part.get(_TEXT_FIELDS[kind]))
            elif kind not in _IMAGE_PARTS:
                total += self.json(part)
        return total

    def message(self, message: Mapping[str, Any]) -> int:
        total = MESSAGE_FRAMING
        for key, value in message.items():
            if key == "content":
                total += self.content(value)
            elif key == "name":
                total += NAME_EXTRA + (self.text(value) if isinstance(value, str) else 0)
            elif key == "type":
                continue
            elif isinstance(value, str):
                total += self.text(value)
            else:
                total += self.json(value)
        return total

    def functions(self, tools: object, *, nested: bool) -> int:
        """Function tools (chat nests the definition under ``function``) and any other tools."""
        if not isinstance(tools, list) or not tools:
            return 0
        opening = 7 if encoding_for(self.model) == "o200k_base" else 10
        total = 0
        seen_function = False
        for tool in tools:
            definition = _definition(tool, nested)
            if definition is None:
                total += self.json(tool)
                continue
            seen_function = True
            total += opening + self._definition_tokens(definition)
        return total + (12 if seen_function else 0)

    def _definition_tokens(self, definition: Mapping[str, Any]) -> int:
        about = _plain(definition.get("description"))
        about = about[:-1] if about.endswith(".") else about
        total = self.text(f"{_plain(definition.get('name'))}:{about}")
        schema = definition.get("parameters")
        properties = schema.get("properties") if isinstance(schema, Mapping) else None
        if not isinstance(properties, Mapping) or not properties:
            return total
        total += 3
        for key, spec in properties.items():
            spec = spec if isinstance(spec, Mapping) else {}
            total += 3
            values = spec.get("enum")
            if isinstance(values, list):
                total -= 3
                total += sum(3 + self.text(_plain(value)) for value in values)
            about = _plain(spec.get("description"))
            about = about[:-1] if about.endswith(".") else about
            total += self.text(f"{key}:{_plain(spec.get('type'))}:{about}")
            others = {name: item for name, item in spec.items() if name not in _RECIPE_KEYS}
            if others:
                total += self.json(others)
        return total


def _plain(value: object) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else compact(value)


def _definition(tool: object, nested: bool) -> Mapping[str, Any] | None:
    if not isinstance(tool, Mapping):
        return None
    if nested:
        inner = tool.get("function")
        return inner if tool.get("type") == "function" and isinstance(inner, Mapping) else None
    return tool if tool.get("type", "function") == "function" else None
