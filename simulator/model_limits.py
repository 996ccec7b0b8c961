"""Which models the simulator serves, and the bucket and limits each one is counted in.

Limits come from a tiers file (``config.tiers``), scaled by ``--limit-scale``. Models naming the same
``budget`` share one bucket; its limits are, per dimension, the smallest non-zero figure among them.
A dated snapshot or ``-latest`` alias of a named model (``config.tiers.model_family``) is served in its
base model's bucket, as a hosted API counts it. Unknown models are refused (404 ``model_not_found``)
unless ``--default-limits`` is given or the tiers file names a ``default_tier``: then any model is
served, each unknown one in its own bucket with the default limits (or none).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from config.tiers import DEFAULT_TIERS_FILE, TierConfig, load_tiers, model_family
from simulator.ratelimit import Limits


@dataclass(frozen=True, slots=True)
class ModelRule:
    """The bucket a model is counted in and the limits of that bucket."""

    bucket: str
    limits: Limits


class LimitTable:
    """Model name to rule, plus what to do with models the tiers file does not name."""

    def __init__(self, rules: Mapping[str, ModelRule], unknown: Limits | None) -> None:
        self._rules = dict(rules)
        self._unknown = unknown

    @property
    def known_models(self) -> list[str]:
        return sorted(self._rules)

    @property
    def accepts_any_model(self) -> bool:
        return self._unknown is not None

    def rule_for(self, model: str) -> ModelRule | None:
        """The model's rule, or None when the model is unknown and unknown models are refused."""
        rule = next((self._rules[name] for name in model_family(model) if name in self._rules), None)
        if rule is None and self._unknown is not None:
            return ModelRule(model, self._unknown)
        return rule


def read_tiers(path: Path | None) -> TierConfig:
    """Load the tiers file (the default one when ``path`` is None); raises config's ConfigError."""
    return load_tiers(path if path is not None else DEFAULT_TIERS_FILE)


def build_limit_table(tiers: TierConfig, scale: float, default_limits: Limits | None) -> LimitTable:
    """Rules for every model of ``tiers``, scaled by ``scale``."""
    own: dict[str, tuple[str, Limits]] = {}
    members: dict[str, list[Limits]] = {}
    for tier in tiers.tiers.values():
        for model, configured in tier.models.items():
            limits = Limits(configured.rpm, configured.tpm, configured.ipm).scaled(scale)
            bucket = configured.budget or model
            own[model] = (bucket, limits)
            members.setdefault(bucket, []).append(limits)
    shared = {bucket: _tightest(group) for bucket, group in members.items()}
    rules = {model: ModelRule(bucket, shared[bucket]) for model, (bucket, _) in own.items()}
    unknown = default_limits.scaled(scale) if default_limits is not None else None
    if unknown is None and tiers.default_tier is not None:
        unknown = Limits()
    return LimitTable(rules, unknown)


def _tightest(group: list[Limits]) -> Limits:
    def smallest(values: list[int]) -> int:
        limited = [value for value in values if value > 0]
        return min(limited) if limited else 0

    return Limits(
        smallest([limits.rpm for limits in group]),
        smallest([limits.tpm for limits in group]),
        smallest([limits.ipm for limits in group]),
    )
