"""Tokens that images cost: vision inputs (per-model rules) and gpt-image-1 outputs.

Vision inputs follow one of two documented rules, chosen per model family by ``vision_rule``:

- Tiles (gpt-4o, gpt-4.1, gpt-5 and most others): ``detail: low`` costs the base figure. ``high`` and
  ``auto`` scale the image down to fit 2048x2048, then down again so its short side is at most 768,
  and cost the base plus the tile figure for each 512 px tile covering it (1024x1024 → 765 tokens on
  gpt-4o; 2048x4096 → 1105). Small images are never scaled up.
- Patches (gpt-4.1-mini, gpt-4.1-nano, gpt-5-mini, gpt-5-nano, o4-mini): the number of 32 px patches
  covering the image, scaled down to a budget of 1536 patches, times a per-model multiplier. The
  ``detail`` setting does not change it.

When the size is unknown (an http(s) URL, which is never fetched, a file id, or a data URI whose header
cannot be read) the image is charged the worst case for its model and detail; the estimate is settled
against the real ``usage`` after the call.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

from domain.tokens.image_size import Size, image_size_from_data_uri
from domain.tokens.text import base_model_name

__all__ = [
    "DEFAULT_VISION_RULE",
    "PatchRule",
    "TileRule",
    "VisionRule",
    "image_generation_output_tokens",
    "image_input_tokens",
    "vision_rule",
]

_FIT = 2048
_SHORT_SIDE = 768
_TILE = 512
_PATCH = 32


@dataclass(frozen=True, slots=True)
class TileRule:
    """Base tokens per image plus tile tokens per 512 px tile at high detail."""

    base: int
    tile: int

    def tokens(self, size: Size | None, detail: str) -> int:
        """Tokens for an image of ``size`` (None: unknown) at ``detail``."""
        if detail == "low":
            return self.base
        if size is None:
            return self.worst_case()
        width, height = Fraction(size[0]), Fraction(size[1])
        longest = max(width, height)
        if longest > _FIT:
            width, height = width * _FIT / longest, height * _FIT / longest
        shortest = min(width, height)
        if shortest > _SHORT_SIDE:
            width, height = width * _SHORT_SIDE / shortest, height * _SHORT_SIDE / shortest
        tiles = max(1, math.ceil(width / _TILE)) * max(1, math.ceil(height / _TILE))
        return self.base + self.tile * tiles

    def worst_case(self) -> int:
        """High detail at the largest size that survives the scaling: 768x2048, so 2 x 4 tiles."""
        return self.base + self.tile * math.ceil(_SHORT_SIDE / _TILE) * math.ceil(_FIT / _TILE)


@dataclass(frozen=True, slots=True)
class PatchRule:
    """32 px patches, capped at ``budget`` patches, times ``multiplier``."""

    multiplier: float
    budget: int = 1536

    def tokens(self, size: Size | None, detail: str) -> int:
        """Tokens for an image of ``size`` (None: unknown); ``detail`` does not matter."""
        del detail
        if size is None:
            return self.worst_case()
        width, height = size
        patches = math.ceil(width / _PATCH) * math.ceil(height / _PATCH)
        if patches > self.budget:
            shrink = math.sqrt(_PATCH * _PATCH * self.budget / (width * height))
            whole = math.floor(width * shrink / _PATCH)
            if whole > 0:
                # Shrink a little more so the width is a whole number of patches; the height follows
                # the aspect ratio exactly.
                patches = whole * math.ceil(Fraction(whole * height, width))
            else:
                patches = math.ceil(height * shrink / _PATCH)
        return math.ceil(min(patches, self.budget) * self.multiplier)

    def worst_case(self) -> int:
        """The whole patch budget."""
        return math.ceil(self.budget * self.multiplier)


VisionRule = TileRule | PatchRule

DEFAULT_VISION_RULE = TileRule(base=85, tile=170)
"""gpt-4o's figures, used for models the table does not know (other providers' models included)."""

# First matching prefix wins, so the more specific names come first.
_VISION_RULES: tuple[tuple[str, VisionRule], ...] = (
    ("gpt-4o-mini", TileRule(base=2833, tile=5667)),
    ("gpt-4.1-mini", PatchRule(multiplier=1.62)),
    ("gpt-4.1-nano", PatchRule(multiplier=2.46)),
    ("gpt-5-mini", PatchRule(multiplier=1.62)),
    ("gpt-5-nano", PatchRule(multiplier=2.46)),
    ("o4-mini", PatchRule(multiplier=1.72)),
    ("o1", TileRule(base=75, tile=150)),
    ("o3", TileRule(base=75, tile=150)),
    ("computer-use", TileRule(base=65, tile=129)),
    ("gpt-4o", DEFAULT_VISION_RULE),
    ("chatgpt-4o", DEFAULT_VISION_RULE),
    ("gpt-4.1", DEFAULT_VISION_RULE),
    ("gpt-4.5", DEFAULT_VISION_RULE),
    ("gpt-5", DEFAULT_VISION_RULE),
)


def vision_rule(model: object) -> VisionRule:
    """The image-input rule for ``model``; ``DEFAULT_VISION_RULE`` when it is unknown."""
    if isinstance(model, str):
        name = base_model_name(model)
        for prefix, rule in _VISION_RULES:
            if name.startswith(prefix):
                return rule
    return DEFAULT_VISION_RULE


def image_input_tokens(model: object, url: object, detail: object = "auto") -> int:
    """Tokens for one input image at ``url`` (a data URI is measured; anything else is the worst case)."""
    rule = vision_rule(model)
    level = detail.strip().lower() if isinstance(detail, str) else "auto"
    size = image_size_from_data_uri(url) if isinstance(url, str) else None
    return rule.tokens(size, level)


# gpt-image-1 output tokens per image, by size and quality.
_GPT_IMAGE_OUTPUT: dict[str, dict[str, int]] = {
    "1024x1024": {"low": 272, "medium": 1056, "high": 4160},
    "1024x1536": {"low": 408, "medium": 1584, "high": 6240},
    "1536x1024": {"low": 400, "medium": 1568, "high": 6208},
}
_QUALITY_ALIASES = {"low": "low", "medium": "medium", "high": "high", "hd": "high"}


def image_generation_output_tokens(model: object, size: object = None, quality: object = None) -> int:
    """Output tokens of one generated image: the gpt-image table, or 0 for dall-e and other models.

    ``size`` auto or missing means 1024x1024, and an unknown size the largest one. ``quality`` auto,
    missing or unknown means medium.
    """
    if not isinstance(model, str) or not base_model_name(model).startswith("gpt-image"):
        return 0
    level = _QUALITY_ALIASES.get(quality.strip().lower() if isinstance(quality, str) else "", "medium")
    key = size.strip().lower() if isinstance(size, str) else "auto"
    if key == "auto":
        key = "1024x1024"
    row = _GPT_IMAGE_OUTPUT.get(key)
    if row is None:
        return max(table[level] for table in _GPT_IMAGE_OUTPUT.values())
    return row[level]
