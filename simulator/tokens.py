"""Deterministic token arithmetic: what a request's usage will say, and what it costs at admission.

- Text costs its real tokens in the model's encoding (``simulator.prompt_tokens``).
- An input image is priced by its model family. Tile models: ``low`` costs the base figure; ``high`` and
  ``auto`` the base plus one tile figure per 512 px tile after scaling the image to fit 2048x2048 and
  then its short side down to 768 (85 and 170 for gpt-4o, gpt-4.1, gpt-5; 2833 and 5667 for
  gpt-4o-mini; 75 and 150 for o1 and o3; 65 and 129 for computer-use). Patch models (gpt-4.1-mini and
  -nano, gpt-5-mini and -nano, o4-mini): the 32 px patches covering the image, scaled down to at most
  1536, times the model's multiplier, whatever the detail. The size comes from a data URL's header;
  any other URL (never fetched) counts as 1024x1024.
- A completion has ``8 + prompt_tokens // 4`` visible tokens per choice; reasoning models (o-series and
  gpt-5) think as many tokens again first. The completion cap (``max_completion_tokens``, ``max_tokens``,
  ``max_output_tokens``, else the configured default) cuts reasoning last: visible tokens go first.
- Admission charges ``prompt_tokens + cap * n``, the way hosted APIs count a request against TPM.
- gpt-image-1 output tokens come from the size and quality table of hosted pricing.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from fractions import Fraction

from simulator.image_size import size_from_data_url

DEFAULT_IMAGE_SIZE = (1024, 1024)
_REASONING_MODEL = re.compile(r"^(o\d|gpt-5)")
# Tile models: (prefix, base, per tile); patch models: (prefix, multiplier). First match wins.
_VISION_FIGURES: tuple[tuple[str, int, int], ...] = (
    ("gpt-4o-mini", 2833, 5667),
    ("o1", 75, 150),
    ("o3", 75, 150),
    ("computer-use", 65, 129),
)
_PATCH_MODELS: tuple[tuple[str, float], ...] = (
    ("gpt-4.1-mini", 1.62),
    ("gpt-4.1-nano", 2.46),
    ("gpt-5-mini", 1.62),
    ("gpt-5-nano", 2.46),
    ("o4-mini", 1.72),
)
_PATCH = 32
_PATCH_BUDGET = 1536
_DEFAULT_VISION_FIGURES = (85, 170)
_IMAGE_OUTPUT_TOKENS: dict[str, dict[str, int]] = {
    "1024x1024": {"low": 272, "medium": 1056, "high": 4160},
    "1024x1536": {"low": 408, "medium": 1584, "high": 6240},
    "1536x1024": {"low": 400, "medium": 1568, "high": 6208},
}


def is_reasoning_model(model: str) -> bool:
    return _REASONING_MODEL.match(model) is not None


def vision_figures(model: str) -> tuple[int, int]:
    """``(base, per_tile)`` image token figures of a model."""
    for prefix, base, tile in _VISION_FIGURES:
        if model.startswith(prefix):
            return base, tile
    return _DEFAULT_VISION_FIGURES


def patch_multiplier(model: str) -> float | None:
    """The multiplier of a patch-priced model, or None for a tile-priced one."""
    for prefix, multiplier in _PATCH_MODELS:
        if model.startswith(prefix):
            return multiplier
    return None


def _patch_tokens(size: tuple[int, int], multiplier: float) -> int:
    width, height = size
    patches = math.ceil(width / _PATCH) * math.ceil(height / _PATCH)
    if patches > _PATCH_BUDGET:
        shrink = math.sqrt(_PATCH * _PATCH * _PATCH_BUDGET / (width * height))
        columns = math.floor(width * shrink / _PATCH)
        if columns > 0:  # whole patches across; the height keeps the aspect ratio
            patches = columns * math.ceil(Fraction(columns * height, width))
        else:
            patches = math.ceil(height * shrink / _PATCH)
    return math.ceil(min(patches, _PATCH_BUDGET) * multiplier)


def image_tokens(model: str, size: tuple[int, int], detail: str) -> int:
    """Tokens of one input image of ``size`` at ``detail`` (low, high or auto)."""
    multiplier = patch_multiplier(model)
    if multiplier is not None:
        return _patch_tokens(size, multiplier)
    base, tile = vision_figures(model)
    if detail == "low":
        return base
    width, height = Fraction(size[0]), Fraction(size[1])
    if max(width, height) > 2048:
        ratio = 2048 / max(width, height)
        width, height = width * ratio, height * ratio
    if min(width, height) > 768:
        ratio = 768 / min(width, height)
        width, height = width * ratio, height * ratio
    tiles = max(1, math.ceil(width / 512)) * max(1, math.ceil(height / 512))
    return base + tile * tiles


def image_url_tokens(model: str, url: str, detail: str) -> int:
    """Tokens of an image given by URL; raises image_size.BadImageDataError for a broken data URL."""
    size = None
    if url.startswith("data:"):
        size = size_from_data_url(url)
    return image_tokens(model, size or DEFAULT_IMAGE_SIZE, detail)


@dataclass(frozen=True, slots=True)
class CompletionTokens:
    """Completion tokens of one choice: visible, reasoning, and whether the cap cut them."""

    visible: int
    reasoning: int
    truncated: bool

    @property
    def total(self) -> int:
        return self.visible + self.reasoning


def plan_completion(prompt_tokens: int, cap: int, reasoning_model: bool) -> CompletionTokens:
    """The completion of one choice for a prompt of ``prompt_tokens`` under ``cap``."""
    visible = 8 + prompt_tokens // 4
    reasoning = visible if reasoning_model else 0
    if visible + reasoning <= cap:
        return CompletionTokens(visible, reasoning, False)
    kept_reasoning = min(reasoning, cap)
    return CompletionTokens(cap - kept_reasoning, kept_reasoning, True)


def admission_tokens(prompt_tokens: int, cap: int, choices: int = 1) -> int:
    """Tokens a call is charged at admission: its prompt plus the largest completion it may get."""
    return prompt_tokens + cap * choices


def cached_tokens(prompt_tokens: int, seen_before: bool) -> int:
    """Prompt tokens served from the cache: whole 128-token blocks of a repeated prompt of 1024 or more."""
    if not seen_before or prompt_tokens < 1024:
        return 0
    return prompt_tokens // 128 * 128


def image_output_tokens(size: str, quality: str) -> int:
    """Output tokens of one gpt-image-1 image (``auto`` size is 1024x1024, ``auto`` quality is medium)."""
    row = _IMAGE_OUTPUT_TOKENS.get(size, _IMAGE_OUTPUT_TOKENS["1024x1024"])
    return row.get(quality, row["medium"])
