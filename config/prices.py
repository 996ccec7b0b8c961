"""The price table: what each model costs, and from which day.

A prices file is TOML (``config/prices.toml`` documents every field)::

    [[models."gpt-4o-mini"]]
    effective = 2024-07-18     # the UTC day from which this entry applies
    input = 0.15               # USD per million input tokens
    cached_input = 0.075       # USD per million cached input tokens (default: input)
    output = 0.60              # USD per million output tokens

    batch_discount = 0.5       # the provider's Batch API takes this fraction off (default 0.5: half price)
    batch_input = 0.075        # or name the batch prices outright (batch_cached_input, batch_output too)

    [[models."dall-e-3"]]
    effective = 2023-11-06
    default_quality = "standard"
    default_size = "1024x1024"
    [models."dall-e-3".images.standard]
    "1024x1024" = 0.04         # USD per image, by quality then size

Amounts are read as ``Decimal`` so that hand-computed figures match to the cent and beyond. A model
with several entries is priced, for each day, by the latest entry that is in effect that day; usage
from before a model's first entry is unpriced. ``load_prices`` reads a file once per path.
"""

from __future__ import annotations

import bisect
import tomllib
from datetime import date
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from config.errors import ConfigError
from config.tiers import model_family

DEFAULT_PRICES_FILE = Path(__file__).with_name("prices.toml")
PER_MILLION = Decimal(1_000_000)
DEFAULT_BATCH_DISCOUNT = Decimal("0.5")
"""OpenAI's Batch API costs half the live price."""
ImagePrices = dict[str, dict[str, Decimal]]
"""USD per image, by quality then size."""


class ModelPrice(BaseModel):
    """One model's prices from ``effective`` on."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    effective: date
    input: Decimal = Field(default=Decimal(0), ge=0)
    cached_input: Decimal | None = Field(default=None, ge=0)
    output: Decimal = Field(default=Decimal(0), ge=0)
    images: ImagePrices = Field(default_factory=dict)
    default_quality: str | None = None
    default_size: str | None = None
    batch_discount: Decimal = Field(default=DEFAULT_BATCH_DISCOUNT, ge=0, le=1)
    batch_input: Decimal | None = Field(default=None, ge=0)
    batch_cached_input: Decimal | None = Field(default=None, ge=0)
    batch_output: Decimal | None = Field(default=None, ge=0)

    @field_validator("images")
    @classmethod
    def _non_negative_image_prices(cls, value: ImagePrices) -> ImagePrices:
        for quality, sizes in value.items():
            for size, price in sizes.items():
                if price < 0:
                    raise ValueError(f"images.{quality}.{size}: a price cannot be negative")
        return value

    @property
    def cached_input_price(self) -> Decimal:
        """USD per million cached input tokens (the input price when none is set)."""
        return self.input if self.cached_input is None else self.cached_input

    def batch_price(self) -> ModelPrice:
        """The prices of a call made through the provider's Batch API: the explicit ``batch_*`` prices,
        else the live ones less ``batch_discount``."""
        keep = 1 - self.batch_discount
        return self.model_copy(
            update={
                "input": self.batch_input if self.batch_input is not None else self.input * keep,
                "cached_input": self.batch_cached_input
                if self.batch_cached_input is not None
                else self.cached_input_price * keep,
                "output": self.batch_output if self.batch_output is not None else self.output * keep,
            }
        )

    def image_price(self, quality: str | None, size: str | None) -> Decimal | None:
        """USD for one image of ``quality`` and ``size`` (defaults filled in), or None when not listed."""
        by_size = self.images.get(quality or self.default_quality or "")
        if by_size is None:
            return None
        return by_size.get(size or self.default_size or "")


class PriceTable(BaseModel):
    """Every model's price entries, oldest first."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    models: dict[str, list[ModelPrice]] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _sorted_and_distinct(self) -> PriceTable:
        for model, entries in self.models.items():
            if not entries:
                raise ValueError(f"model {model!r} has no price entry")
            entries.sort(key=lambda entry: entry.effective)
            days = [entry.effective for entry in entries]
            if len(set(days)) != len(days):
                raise ValueError(f"model {model!r} has two price entries with the same effective date")
        return self

    def price_on(self, model: str, day: date) -> ModelPrice | None:
        """The entry in effect for ``model`` on ``day``, or None (unknown model, or before its first). A
        dated snapshot or ``-latest`` alias without entries of its own is priced as its base model."""
        entries = next((self.models[name] for name in model_family(model) if name in self.models), None)
        if not entries:
            return None
        index = bisect.bisect_right([entry.effective for entry in entries], day)
        return entries[index - 1] if index else None


def parse_prices(data: dict[str, Any]) -> PriceTable:
    """Build a PriceTable from decoded TOML."""
    return PriceTable.model_validate(data)


@cache
def load_prices(path: Path | str = DEFAULT_PRICES_FILE) -> PriceTable:
    """Read and validate a prices file; any problem raises ConfigError naming the file and reason."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read prices file: {exc.strerror or exc}") from exc
    try:
        data = tomllib.loads(text, parse_float=Decimal)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    try:
        return parse_prices(data)
    except ValidationError as exc:
        reasons = "; ".join(
            f"{'.'.join(str(part) for part in err.get('loc', ())) or 'file'}: {err.get('msg', 'invalid')}"
            for err in exc.errors()
        )
        raise ConfigError(f"{path}: {reasons}") from exc
