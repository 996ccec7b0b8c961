"""Model tiers: which Celery queue serves a model, and the limits each model runs under.

A tiers file is TOML::

    default_tier = "standard"          # optional: tier for models the file does not name
    burst_seconds = 1.0                # optional: limiter burst, in seconds of refill

    [tiers.standard]
    provider = "openai"                # a provider name from settings (BATCHERY_PROVIDERS)
    concurrency = 64                   # worker concurrency for this tier's queue
    timeout_seconds = 60               # upstream request timeout
    max_attempts = 5                   # upstream attempts before the job fails
    token_accounting = "admission"     # how the provider counts TPM (see below)

    [tiers.standard.models."gpt-4o-mini"]
    rpm = 5000                         # requests per minute
    tpm = 2000000                      # tokens per minute (0 = not limited)
    ipm = 0                            # images per minute (image models)
    budget = "mini-shared"             # optional: models naming the same budget share one bucket
    context_window = 128000            # optional: the most tokens a call may hold, prompt and reply
    max_output_tokens = 16384          # optional: the most tokens the model may write in one reply

``token_accounting`` says how the provider counts tokens against TPM, so the limiter can mirror it:

- ``admission`` (OpenAI and most hosted APIs): at admission, the estimated prompt plus ``max_tokens``
  times ``n``, never refunded. The limiter reserves that estimate and keeps it; a 429 (not admitted)
  refunds the tokens.
- ``usage``: real consumption. After each response the reservation is settled against the returned
  ``usage``; a failed call refunds its tokens.

``context_window`` and ``max_output_tokens`` bound what one job may ask for: ``max_tokens``,
``max_completion_tokens`` and ``max_output_tokens`` above either answer 422 at submission. A model
without them (or an unknown model on the default tier) is still held to ``HARD_MAX_OUTPUT_TOKENS``.

Each model belongs to exactly one tier. A model the file does not name resolves to the model it is a
snapshot or alias of (``model_family``): ``gpt-4o-2024-08-06``, ``gpt-4-0613`` and ``o3-latest`` run in the
tier of ``gpt-4o``, ``gpt-4`` and ``o3``, under that model's limits and in its limiter bucket, as the
provider counts them. Other unknown models go to ``default_tier``, or are refused.

Loading reports the file, the line (for TOML syntax errors) and
the reason, so a malformed file stops start-up with a message a person can act on.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from config.errors import ConfigError

_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
# A dated snapshot (-2024-08-06, or the older -0613) or a moving alias (-latest) of a base model.
_SNAPSHOT_SUFFIX = re.compile(r"-(?:\d{4}-\d{2}-\d{2}|\d{4}|latest)$")
DEFAULT_TIERS_FILE = Path(__file__).with_name("tiers.toml")


HARD_MAX_OUTPUT_TOKENS = 1_000_000
"""The most output tokens any job may ask for, whatever the model (a model's own limits are lower)."""


class ModelLimits(BaseModel):
    """Per-minute limits of one model, as the provider enforces them, and the size of one call."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    rpm: int = Field(gt=0)
    tpm: int = Field(default=0, ge=0)
    ipm: int = Field(default=0, ge=0)
    budget: str | None = None
    context_window: int | None = Field(default=None, ge=1, le=100_000_000)
    max_output_tokens: int | None = Field(default=None, ge=1, le=HARD_MAX_OUTPUT_TOKENS)
    batch_queue_tokens: int | None = Field(default=None, ge=1)
    """The provider's Batch API queue limit for this model (its "enqueued tokens"): the most tokens
    batchery keeps in provider batches of the model at once; None is no limit of batchery's own."""

    @property
    def output_token_limit(self) -> int:
        """The most output tokens one call may ask for: the smallest of the model's limits."""
        bounds = [HARD_MAX_OUTPUT_TOKENS, self.max_output_tokens, self.context_window]
        return min(bound for bound in bounds if bound is not None)


class Tier(BaseModel):
    """A group of models served by one Celery queue."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    provider: str = "openai"
    concurrency: int = Field(default=16, ge=1, le=2000)
    timeout_seconds: float = Field(default=60.0, gt=0, le=3600)
    max_attempts: int = Field(default=5, ge=1, le=100)
    backoff_base_seconds: float = Field(default=1.0, gt=0)
    backoff_cap_seconds: float = Field(default=60.0, gt=0)
    deadline_seconds: float = Field(default=3600.0, gt=0)
    token_accounting: Literal["admission", "usage"] = "admission"
    models: dict[str, ModelLimits]

    @field_validator("name")
    @classmethod
    def _valid_name(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError("tier names use lower-case letters, digits, '-' and '_'")
        return value

    @property
    def queue(self) -> str:
        return f"tier.{self.name}"


class TierConfig(BaseModel):
    """Every tier, and the lookup from model to tier."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    tiers: dict[str, Tier]
    default_tier: str | None = None
    burst_seconds: float = Field(default=1.0, gt=0, le=60)

    @model_validator(mode="after")
    def _check(self) -> TierConfig:
        if not self.tiers:
            raise ValueError("at least one tier is required")
        seen: dict[str, str] = {}
        for tier in self.tiers.values():
            for model in tier.models:
                if model in seen:
                    raise ValueError(f"model {model!r} is in tiers {seen[model]!r} and {tier.name!r}")
                seen[model] = tier.name
        if self.default_tier is not None and self.default_tier not in self.tiers:
            raise ValueError(f"default_tier {self.default_tier!r} is not a tier")
        return self

    @cached_property
    def _tier_of_model(self) -> dict[str, Tier]:
        return {model: tier for tier in self.tiers.values() for model in tier.models}

    @property
    def known_models(self) -> list[str]:
        return sorted(self._tier_of_model)

    def configured_model(self, model: str) -> str | None:
        """The model of the file that ``model`` is, or is a snapshot or alias of; None when unknown."""
        for candidate in model_family(model):
            if candidate in self._tier_of_model:
                return candidate
        return None

    def tier_for(self, model: str) -> Tier | None:
        """The tier serving ``model`` (or its base model), the default tier for unknown models, or None."""
        base = self.configured_model(model)
        if base is not None:
            return self._tier_of_model[base]
        return self.tiers[self.default_tier] if self.default_tier is not None else None

    def limits_for(self, model: str) -> ModelLimits | None:
        """The model's limits; a snapshot shares its base model's limits and bucket; an unknown model on
        the default tier borrows none."""
        base = self.configured_model(model)
        if base is None:
            return None
        tier = self._tier_of_model[base]
        limits = tier.models[base]
        if base == model or limits.budget is not None:
            return limits
        # the limiter names a model's own bucket "<tier>:<model>": the snapshot joins its base's
        return limits.model_copy(update={"budget": f"{tier.name}:{base}"})

    @property
    def queues(self) -> list[str]:
        return [tier.queue for tier in self.tiers.values()]


def model_family(model: str) -> list[str]:
    """``model`` then the models it is a snapshot or alias of, nearest first: ``gpt-4o-2024-08-06`` gives
    ``[gpt-4o-2024-08-06, gpt-4o]``; ``gpt-5-chat-latest`` gives ``[gpt-5-chat-latest, gpt-5-chat]``."""
    family = [model]
    while (match := _SNAPSHOT_SUFFIX.search(family[-1])) and match.start() > 0:
        family.append(family[-1][: match.start()])
    return family


def parse_tiers(data: Mapping[str, Any]) -> TierConfig:
    """Build a TierConfig from decoded TOML (tier names are filled in from their keys)."""
    raw = dict(data)
    tiers = raw.get("tiers")
    if isinstance(tiers, Mapping):
        raw["tiers"] = {
            name: ({**body, "name": name} if isinstance(body, Mapping) else body)
            for name, body in tiers.items()
        }
    return TierConfig.model_validate(raw)


def load_tiers(path: Path | str) -> TierConfig:
    """Read and validate a tiers file; any problem raises ConfigError naming the file and reason."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read tiers file: {exc.strerror or exc}") from exc
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: {exc}") from exc  # the message names the line and column
    try:
        return parse_tiers(data)
    except ValidationError as exc:
        reasons = "; ".join(_describe(err, text) for err in exc.errors())
        raise ConfigError(f"{path}: {reasons}") from exc


def _describe(err: Mapping[str, Any], text: str) -> str:
    location = ".".join(str(part) for part in err.get("loc", ()))
    line = _line_of(location, text)
    where = f"line {line}: " if line else ""
    return f"{where}{location or 'file'}: {err.get('msg', 'invalid')}"


def _line_of(location: str, text: str) -> int | None:
    """Best-effort line of the table or key an error points at (TOML decoding drops positions)."""
    parts = [p for p in location.split(".") if p]
    for depth in range(len(parts), 0, -1):
        needle = parts[depth - 1]
        for number, line in enumerate(text.splitlines(), start=1):
            stripped = line.strip()
            if stripped.startswith("[") and needle in stripped:
                return number
            if stripped.split("=")[0].strip().strip('"') == needle:
                return number
    return None
