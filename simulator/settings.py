"""The simulator's settings: one typed, frozen object built from flags, environment variables and defaults.

Every setting has a flag (``--error-rate``) and an environment variable with the ``BATCHERY_SIM_`` prefix
(``BATCHERY_SIM_ERROR_RATE``); a flag beats the variable, which beats the default. A bad value raises
``SettingsError`` whose message starts with the flag or variable that carried it. The settings listed in
``RUNTIME_FIELDS`` can also be changed while the server runs, through ``POST /_control`` with the same
names (``{"error_rate": 0.1, "latency": "uniform:20:80"}``).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from simulator.latency import ZERO_LATENCY, LatencySpec, parse_latency
from simulator.ratelimit import Limits

ENV_PREFIX = "BATCHERY_SIM_"
QUANTIZATIONS = ("window", "bucket")
LOG_LEVELS = ("critical", "error", "warning", "info", "debug", "trace")


class SettingsError(ValueError):
    """A simulator setting has an invalid value."""


@dataclass(frozen=True, slots=True)
class SimulatorSettings:
    """Everything the simulator can be told; the defaults serve tests and the quick start."""

    host: str = "127.0.0.1"
    port: int = 8100
    tiers: Path | None = None
    limit_scale: float = 1.0
    no_limits: bool = False
    default_limits: Limits | None = None
    quantum: float = 1.0
    quantization: str = "window"
    count_rejected: bool = False
    quota_exceeded: bool = False
    require_key: str | None = None
    latency: LatencySpec = ZERO_LATENCY
    error_rate: float = 0.0
    hang_rate: float = 0.0
    hang_seconds: float = 30.0
    malformed_rate: float = 0.0
    default_max_tokens: int = 1024
    stream_chunk_ms: float = 5.0
    seed: int | None = None
    log_level: str = "warning"
    batch_validating_seconds: float = 0.5
    batch_processing_seconds: float = 0.5
    batch_line_seconds: float = 0.0
    batch_finalizing_seconds: float = 0.5
    batch_cancelling_seconds: float = 0.5
    batch_enqueued_tokens: int = 1_000_000_000
    batch_error_rate: float = 0.0
    files_max_bytes: int = 64 * 1024 * 1024

    def public(self) -> dict[str, Any]:
        """The settings as JSON-ready values (the required key is masked)."""
        values: dict[str, Any] = {}
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if field.name == "require_key" and value is not None:
                value = "***"
            elif isinstance(value, Limits):
                value = format_limits(value)
            elif isinstance(value, LatencySpec | Path):
                value = str(value)
            values[field.name] = value
        return values


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """How one setting is written on the command line and converted from text or JSON."""

    name: str
    convert: Callable[[object], Any]
    help: str
    metavar: str | None = None
    is_switch: bool = False

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def env_var(self) -> str:
        return ENV_PREFIX + self.name.upper()


def _text(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected a string, got {value!r}")
    return value


def _optional_text(value: object) -> str | None:
    text = _text(value).strip()
    return text or None


def _number(value: object) -> float:
    if isinstance(value, bool):
        raise ValueError(f"expected a number, got {value!r}")
    if isinstance(value, int | float):
        number = float(value)
    else:
        try:
            number = float(_text(value))
        except ValueError:
            raise ValueError(f"expected a number, got {value!r}") from None
    if not math.isfinite(number):
        raise ValueError(f"expected a finite number, got {value!r}")
    return number


def _integer(value: object) -> int:
    if isinstance(value, bool):
        raise ValueError(f"expected an integer, got {value!r}")
    if isinstance(value, int):
        return value
    try:
        return int(_text(value).strip())
    except ValueError:
        raise ValueError(f"expected an integer, got {value!r}") from None


def _switch(value: object) -> bool:
    if isinstance(value, bool):
        return value
    text = _text(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"expected true or false, got {value!r}")


def _rate(value: object) -> float:
    number = _number(value)
    if not 0.0 <= number <= 1.0:
        raise ValueError(f"must be between 0 and 1, got {value!r}")
    return number


def _port(value: object) -> int:
    number = _integer(value)
    if not 0 <= number <= 65535:
        raise ValueError(f"must be between 0 and 65535, got {value!r}")
    return number


def _positive(value: object) -> float:
    number = _number(value)
    if number <= 0:
        raise ValueError(f"must be above 0, got {value!r}")
    return number


def _quantum(value: object) -> float:
    number = _positive(value)
    if number > 60:
        raise ValueError(f"must be at most 60 seconds, got {value!r}")
    return number


def _quantization(value: object) -> str:
    text = str(value).strip().lower()
    if text not in QUANTIZATIONS:
        raise ValueError(f"must be one of {', '.join(QUANTIZATIONS)}, got {value!r}")
    return text


def _not_negative(value: object) -> float:
    number = _number(value)
    if number < 0:
        raise ValueError(f"must not be negative, got {value!r}")
    return number


def _positive_integer(value: object) -> int:
    number = _integer(value)
    if number < 1:
        raise ValueError(f"must be at least 1, got {value!r}")
    return number


def _not_negative_integer(value: object) -> int:
    number = _integer(value)
    if number < 0:
        raise ValueError(f"must not be negative, got {value!r}")
    return number


def _optional_integer(value: object) -> int | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    return _integer(value)


def _path(value: object) -> Path | None:
    text = _optional_text(value)
    return Path(text) if text else None


def _latency(value: object) -> LatencySpec:
    return value if isinstance(value, LatencySpec) else parse_latency(_text(value))


def _log_level(value: object) -> str:
    level = _text(value).strip().lower()
    if level not in LOG_LEVELS:
        raise ValueError(f"must be one of {', '.join(LOG_LEVELS)}, got {value!r}")
    return level


def parse_limits(value: object) -> Limits | None:
    """``rpm=500,tpm=200000,ipm=0`` (0 or a missing key = not limited), ``unlimited``, or empty for none."""
    if value is None or isinstance(value, Limits):
        return value
    text = _text(value).strip().lower()
    if not text:
        return None
    if text == "unlimited":
        return Limits(0, 0, 0)
    figures = {"rpm": 0, "tpm": 0, "ipm": 0}
    for item in text.split(","):
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or key not in figures:
            raise ValueError(f"expected rpm=N,tpm=N,ipm=N or unlimited, got {value!r}")
        number = _integer(raw)
        if number < 0:
            raise ValueError(f"{key} must not be negative, got {value!r}")
        figures[key] = number
    return Limits(figures["rpm"], figures["tpm"], figures["ipm"])


def format_limits(limits: Limits) -> str:
    return f"rpm={limits.rpm},tpm={limits.tpm},ipm={limits.ipm}"


FIELDS: tuple[FieldSpec, ...] = (
    FieldSpec("host", _text, "interface to listen on (default 127.0.0.1)", "HOST"),
    FieldSpec("port", _port, "port to listen on (default 8100)", "PORT"),
    FieldSpec("tiers", _path, "tiers file with per-model limits (default: config's tiers.toml)", "PATH"),
    FieldSpec("limit_scale", _positive, "multiply every configured limit, e.g. 0.8 (default 1)", "FACTOR"),
    FieldSpec("no_limits", _switch, "enforce no rate limits at all", is_switch=True),
    FieldSpec(
        "default_limits",
        parse_limits,
        "accept any model, limiting unknown ones like this: rpm=N,tpm=N,ipm=N or unlimited",
        "SPEC",
    ),
    FieldSpec("quantum", _quantum, "seconds over which each per-minute budget is enforced (default 1)", "S"),
    FieldSpec(
        "quantization",
        _quantization,
        "window: fixed windows of --quantum seconds (default); bucket: a bucket holding one quantum",
        "MODE",
    ),
    FieldSpec("count_rejected", _switch, "rejected requests also use up the request budget", is_switch=True),
    FieldSpec(
        "quota_exceeded", _switch, "answer every model call with 429 insufficient_quota", is_switch=True
    ),
    FieldSpec("require_key", _optional_text, "accept only this API key (default: any key)", "KEY"),
    FieldSpec(
        "latency", _latency, "fixed:MS, uniform:LO:HI or lognormal:MEDIAN_MS:SIGMA (default fixed:0)", "SPEC"
    ),
    FieldSpec("error_rate", _rate, "share of calls answered with a random 500, 502 or 503", "P"),
    FieldSpec("hang_rate", _rate, "share of calls that stall for --hang-seconds before answering", "P"),
    FieldSpec("hang_seconds", _not_negative, "how long a stalled call waits (default 30)", "S"),
    FieldSpec("malformed_rate", _rate, "share of calls answered 200 with a body that is not JSON", "P"),
    FieldSpec(
        "default_max_tokens",
        _positive_integer,
        "completion cap assumed when a request sets none, for admission and usage (default 1024)",
        "N",
    ),
    FieldSpec(
        "stream_chunk_ms",
        _not_negative,
        "pause between the events of a streamed answer, after the first (default 5)",
        "MS",
    ),
    FieldSpec("seed", _optional_integer, "seed of the random faults and latencies", "N"),
    FieldSpec("log_level", _log_level, "server log level (default warning)", "LEVEL"),
    FieldSpec("batch_validating_seconds", _not_negative, "a batch's time in validating (default 0.5)", "S"),
    FieldSpec(
        "batch_processing_seconds", _not_negative, "a batch's base time in in_progress (default 0.5)", "S"
    ),
    FieldSpec("batch_line_seconds", _not_negative, "in_progress time added per input line (default 0)", "S"),
    FieldSpec("batch_finalizing_seconds", _not_negative, "a batch's time in finalizing (default 0.5)", "S"),
    FieldSpec("batch_cancelling_seconds", _not_negative, "a batch's time in cancelling (default 0.5)", "S"),
    FieldSpec(
        "batch_enqueued_tokens",
        _not_negative_integer,
        "enqueued batch tokens allowed per model; past it a batch fails (default 1e9, 0 = no limit)",
        "N",
    ),
    FieldSpec("batch_error_rate", _rate, "share of batch lines answered with a random 500, 502 or 503", "P"),
    FieldSpec(
        "files_max_bytes", _positive_integer, "largest file POST /v1/files accepts (default 64 MiB)", "BYTES"
    ),
)
FIELDS_BY_NAME: dict[str, FieldSpec] = {field.name: field for field in FIELDS}
RUNTIME_FIELDS = frozenset(
    {
        "latency",
        "error_rate",
        "hang_rate",
        "hang_seconds",
        "malformed_rate",
        "quota_exceeded",
        "count_rejected",
        "limit_scale",
        "no_limits",
        "default_max_tokens",
        "stream_chunk_ms",
        "batch_validating_seconds",
        "batch_processing_seconds",
        "batch_line_seconds",
        "batch_finalizing_seconds",
        "batch_cancelling_seconds",
        "batch_enqueued_tokens",
        "batch_error_rate",
    }
)


def load_settings(flags: Mapping[str, object], environ: Mapping[str, str]) -> SimulatorSettings:
    """Settings from parsed flags (by field name), then ``BATCHERY_SIM_*`` variables, then defaults."""
    values: dict[str, Any] = {}
    for field in FIELDS:
        if field.name in flags:
            values[field.name] = _convert(field, flags[field.name], field.flag)
        elif field.env_var in environ:
            values[field.name] = _convert(field, environ[field.env_var], field.env_var)
    return SimulatorSettings(**values)


def apply_changes(settings: SimulatorSettings, changes: Mapping[str, object]) -> SimulatorSettings:
    """A copy of ``settings`` with runtime changes applied; unknown or fixed names raise SettingsError."""
    values: dict[str, Any] = {}
    for name, raw in changes.items():
        if name not in RUNTIME_FIELDS:
            allowed = ", ".join(sorted(RUNTIME_FIELDS))
            raise SettingsError(f"{name}: cannot be changed at runtime (allowed: {allowed})")
        values[name] = _convert(FIELDS_BY_NAME[name], raw, name)
    return dataclasses.replace(settings, **values)


def _convert(field: FieldSpec, raw: object, source: str) -> Any:
    try:
        return field.convert(raw)
    except ValueError as exc:
        raise SettingsError(f"{source}: {exc}") from None
