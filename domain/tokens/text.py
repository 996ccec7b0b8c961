"""Counting the tokens of a piece of text, exactly and offline.

Counts come from ``bpe-openai``, whose wheels ship OpenAI's ``o200k_base`` and ``cl100k_base`` encoding
files (the same files, byte for byte, that tiktoken downloads) and count with a Rust BPE engine that
gives tiktoken's tokens in linear time. Nothing is downloaded, ever: there is no cache to fill.

Only the package's compiled extension is loaded: its Python wrapper parses a whole encoding file in
Python at import time (about 1 s) to serve features counting does not use. An encoding is loaded on
first use (about 0.1 s each) and kept for the life of the process; ``warm_up`` loads both ahead of
time. Text is counted as ordinary text, as the hosted APIs count a prompt: a special token's spelling
such as ``<|endoftext|>`` is just characters.

``heuristic_tokens`` (4 bytes of UTF-8 per token) is kept only for a machine where the tokenizer
cannot load (a platform without a wheel); it logs once when that happens.
"""

from __future__ import annotations

import functools
import importlib.machinery
import importlib.util
import logging
import math
import sys
import threading
from pathlib import Path
from types import ModuleType
from typing import Protocol

__all__ = [
    "CL100K",
    "O200K",
    "TextCounter",
    "base_model_name",
    "count_text_tokens",
    "encoding_name_for_model",
    "heuristic_tokens",
    "load_counter",
    "warm_up",
]

CL100K = "cl100k_base"
O200K = "o200k_base"

_log = logging.getLogger(__name__)

# Model name prefixes (after any "ft:" and "provider/" prefix) that use o200k_base; everything else,
# embeddings included, is counted with cl100k_base.
_O200K_PREFIXES = (
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


class TextCounter(Protocol):
    """What counting needs from a tokenizer: the number of tokens of a text."""

    def count(self, text: str) -> int: ...


def base_model_name(model: str) -> str:
    """``model`` lower-cased, without a fine-tune ``ft:`` prefix or a ``provider/`` prefix."""
    name = model.strip().lower().removeprefix("ft:")
    return name.rsplit("/", 1)[-1]


def encoding_name_for_model(model: object) -> str:
    """The encoding for ``model``: o200k_base for gpt-4o, 4.1, 5 and the o-series, else cl100k_base."""
    if not isinstance(model, str):
        return CL100K
    return O200K if base_model_name(model).startswith(_O200K_PREFIXES) else CL100K


_EXTENSION = "bpe_openai._bindings"
_loading = threading.Lock()
"""Worker threads may count their first text at once; the extension must be initialised only once."""


def _tokenizer_extension() -> ModuleType:
    """bpe-openai's compiled extension, loaded without running the package's ``__init__``."""
    if _EXTENSION in sys.modules:
        return sys.modules[_EXTENSION]
    package = importlib.util.find_spec("bpe_openai")  # finds the package; does not import it
    if package is None or not package.submodule_search_locations:
        raise ImportError("bpe-openai is not installed")
    for folder in package.submodule_search_locations:
        for suffix in importlib.machinery.EXTENSION_SUFFIXES:
            path = Path(folder) / f"_bindings{suffix}"
            if path.is_file():
                spec = importlib.util.spec_from_file_location(_EXTENSION, path)
                if spec is None or spec.loader is None:
                    break
                module = importlib.util.module_from_spec(spec)
                spec.loader.exec_module(module)
                sys.modules[_EXTENSION] = module  # a later ``import bpe_openai`` reuses it
                return module
    raise ImportError("bpe-openai's compiled extension is missing")


@functools.cache
def load_counter(encoding_name: str) -> TextCounter | None:
    """The tokenizer for ``encoding_name`` (o200k_base or cl100k_base), or None when it cannot load."""
    try:
        with _loading:
            counter: TextCounter = _tokenizer_extension().tokenizer_for_encoding(encoding_name)
    except Exception:  # a missing wheel or an unknown encoding: counted by the heuristic instead
        _log.warning("token counting: encoding %s unavailable, estimating 4 bytes per token", encoding_name)
        return None
    return counter


def warm_up() -> None:
    """Load both encodings now, so that no request pays for it."""
    load_counter(O200K)
    load_counter(CL100K)


def heuristic_tokens(text: str) -> int:
    """About 4 bytes of UTF-8 per token, rounded up: the fallback when no tokenizer loads."""
    if not text:
        return 0
    size = len(text) if text.isascii() else len(text.encode("utf-8", "replace"))
    return math.ceil(size / 4)


def count_text_tokens(text: str, encoding_name: str = CL100K) -> int:
    """The exact number of tokens of ``text`` in ``encoding_name``."""
    if not text:
        return 0
    counter = load_counter(encoding_name)
    if counter is None:
        return heuristic_tokens(text)
    try:
        return counter.count(text)
    except Exception:  # e.g. lone surrogates, which no UTF-8 encoder accepts
        return counter.count(text.encode("utf-8", "replace").decode("utf-8"))
