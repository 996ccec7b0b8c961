"""Counting the tokens of a piece of text, offline.

tiktoken gives exact counts, but it downloads its encoding files on first use. batchery never lets it:
an encoding is used only when its file already sits in tiktoken's cache, under the name tiktoken itself
would look for, with the checksum tiktoken expects (a cached file with a bad checksum makes tiktoken
delete it and download it again). The cache is located as tiktoken locates it: ``TIKTOKEN_CACHE_DIR``,
then ``DATA_GYM_CACHE_DIR``, then ``<tempdir>/data-gym-cache``; an empty value disables the cache, so
it disables tiktoken here too. Operators who want exact counts pre-fill that cache on the machine.

Without an encoding, the heuristic applies: one token per 4 bytes of UTF-8, rounded up. For English
text that is OpenAI's rule of thumb of about 4 characters per token; for other scripts, whose
characters take 2 to 4 bytes, it leans towards more tokens rather than fewer, which is the safe side
for a rate limiter.

The lookup result is cached per encoding for the life of the process (``clear_encoding_cache`` resets
it). Nothing happens at import time.
"""

from __future__ import annotations

import functools
import hashlib
import math
import os
import tempfile
from typing import Protocol

__all__ = [
    "CL100K",
    "O200K",
    "Encoder",
    "base_model_name",
    "clear_encoding_cache",
    "count_text_tokens",
    "encoding_name_for_model",
    "heuristic_tokens",
    "load_encoding",
]

CL100K = "cl100k_base"
O200K = "o200k_base"

# tiktoken names its cache file after the SHA-1 of the blob address below and checks the file against
# the SHA-256 next to it. The address is only a cache key here: it is never fetched.
_ENCODING_FILES: dict[str, tuple[str, str]] = {
    CL100K: (
        "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken",
        "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
    ),
    O200K: (
        "https://openaipublic.blob.core.windows.net/encodings/o200k_base.tiktoken",
        "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
    ),
}

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

_MAX_ENCODING_FILE_BYTES = 32 * 1024 * 1024
"""A cached file larger than this is not an encoding file; it is ignored."""

_MAX_EXACT_CHARS = 200_000
"""Longer texts are counted exactly over this many characters, and the rest is extrapolated."""


class Encoder(Protocol):
    """The part of ``tiktoken.Encoding`` that counting needs."""

    def encode_ordinary(self, text: str) -> list[int]: ...


def base_model_name(model: str) -> str:
    """``model`` lower-cased, without a fine-tune ``ft:`` prefix or a ``provider/`` prefix."""
    name = model.strip().lower().removeprefix("ft:")
    return name.rsplit("/", 1)[-1]


def encoding_name_for_model(model: object) -> str:
    """The tiktoken encoding for ``model``: o200k_base for gpt-4o, 4.1, 5 and the o-series, else cl100k."""
    if not isinstance(model, str):
        return CL100K
    return O200K if base_model_name(model).startswith(_O200K_PREFIXES) else CL100K


def _cache_dir() -> str | None:
    """tiktoken's cache directory, or None when its cache is disabled."""
    if "TIKTOKEN_CACHE_DIR" in os.environ:
        directory = os.environ["TIKTOKEN_CACHE_DIR"]
    elif "DATA_GYM_CACHE_DIR" in os.environ:
        directory = os.environ["DATA_GYM_CACHE_DIR"]
    else:
        directory = os.path.join(tempfile.gettempdir(), "data-gym-cache")
    return directory or None


def _cached_file_is_valid(encoding_name: str) -> bool:
    """True when tiktoken will find ``encoding_name`` in its cache, intact, and so never download."""
    entry = _ENCODING_FILES.get(encoding_name)
    directory = _cache_dir()
    if entry is None or directory is None:
        return False
    address, expected_sha256 = entry
    path = os.path.join(directory, hashlib.sha1(address.encode(), usedforsecurity=False).hexdigest())
    try:
        if not os.path.isfile(path) or os.path.getsize(path) > _MAX_ENCODING_FILE_BYTES:
            return False
        with open(path, "rb") as handle:
            digest = hashlib.sha256(handle.read()).hexdigest()
    except OSError:
        return False
    return digest == expected_sha256


@functools.cache
def load_encoding(encoding_name: str) -> Encoder | None:
    """The tiktoken encoding when it is available locally, else None. Never touches the network."""
    if not _cached_file_is_valid(encoding_name):
        return None
    try:
        import tiktoken
    except ImportError:
        return None
    try:
        return tiktoken.get_encoding(encoding_name)
    except Exception:  # any failure only means "count by the heuristic"
        return None


def clear_encoding_cache() -> None:
    """Forget which encodings were found, so the next count looks in the cache directory again."""
    load_encoding.cache_clear()


def heuristic_tokens(text: str) -> int:
    """About 4 bytes of UTF-8 per token, rounded up (4 characters per token for ASCII text)."""
    if not text:
        return 0
    size = len(text) if text.isascii() else len(text.encode("utf-8", "replace"))
    return math.ceil(size / 4)


def count_text_tokens(text: str, encoding_name: str = CL100K) -> int:
    """Tokens in ``text``: exact with a locally cached tiktoken encoding, else ``heuristic_tokens``.

    The exact count is bounded: past ``_MAX_EXACT_CHARS`` characters, the count of the first part is
    scaled up to the whole length.
    """
    if not text:
        return 0
    encoder = load_encoding(encoding_name)
    if encoder is None:
        return heuristic_tokens(text)
    try:
        if len(text) <= _MAX_EXACT_CHARS:
            return len(encoder.encode_ordinary(text))
        head = len(encoder.encode_ordinary(text[:_MAX_EXACT_CHARS]))
    except Exception:  # a tokenizer failure falls back to the heuristic
        return heuristic_tokens(text)
    return math.ceil(head * len(text) / _MAX_EXACT_CHARS)
