"""Every setting batchery reads, typed and validated, from the environment and `.env`.

Variables are prefixed ``BATCHERY_`` except the ones shared with the wider ecosystem: ``DATABASE_URL``,
``REDIS_URL``, and the official SDK's ``OPENAI_API_KEY`` / ``OPENAI_BASE_URL`` for the default provider.
``get_settings()`` is the cached factory; nothing is read at import time.
"""

from __future__ import annotations

import json
from enum import StrEnum
from functools import cache, cached_property
from ipaddress import IPv4Network, IPv6Network
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AliasChoices,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from config import webhook_settings
from config.errors import ConfigError
from config.prices import DEFAULT_PRICES_FILE
from config.providers import OPENAI_BATCH_ENDPOINTS, Provider, missing_keys
from config.tiers import DEFAULT_TIERS_FILE, TierConfig, load_tiers

DEFAULT_OPENAI_BASE_URL = "https://api.openai.com/v1"
_PLACEHOLDER_SECRETS = {"", "changeme", "change-me", "secret", "dev", "development"}


class Environment(StrEnum):
    development = "development"
    test = "test"
    production = "production"


class Settings(BaseSettings):
    """batchery's configuration. A bad value stops start-up with a message naming the variable."""

    model_config = SettingsConfigDict(
        env_prefix="BATCHERY_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        frozen=True,
        populate_by_name=True,
    )

    environment: Environment = Environment.development
    database_url: str = Field(
        default="sqlite:///./batchery.db",
        validation_alias=AliasChoices("DATABASE_URL", "BATCHERY_DATABASE_URL"),
    )
    redis_url: str = Field(
        default="redis://127.0.0.1:6379/0",
        validation_alias=AliasChoices("REDIS_URL", "BATCHERY_REDIS_URL"),
    )
    redis_prefix: str = "batchery"
    openai_api_key: SecretStr = Field(
        default=SecretStr(""), validation_alias=AliasChoices("OPENAI_API_KEY", "BATCHERY_OPENAI_API_KEY")
    )
    openai_base_url: str = Field(
        default=DEFAULT_OPENAI_BASE_URL,
        validation_alias=AliasChoices("OPENAI_BASE_URL", "BATCHERY_OPENAI_BASE_URL"),
    )
    providers_json: Annotated[dict[str, Provider], NoDecode] = Field(
        default_factory=dict, validation_alias=AliasChoices("BATCHERY_PROVIDERS", "providers_json")
    )
    tiers_file: Path = DEFAULT_TIERS_FILE
    prices_file: Path = DEFAULT_PRICES_FILE
    log_format: Literal["text", "json"] = "text"

    # HTTP API
    max_body_bytes: int = Field(default=4 * 1024 * 1024, ge=1024)
    default_page_size: int = Field(default=20, ge=1, le=100)
    file_max_bytes: int = Field(default=200 * 1024 * 1024, ge=1024)
    batch_max_requests: int = Field(default=50_000, ge=1)

    # Authentication, tenants, input limits and log hygiene (docs/security.md)
    auth_disabled: bool = False
    max_queued_jobs_per_tenant: int = Field(default=100_000, ge=1)
    max_messages: int = Field(default=2048, ge=1)
    max_metadata_bytes: int = Field(default=8192, ge=2)
    max_url_length: int = Field(default=2048, ge=64, le=8192)
    max_jsonl_line_bytes: int = Field(default=4 * 1024 * 1024, ge=1024)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    flower_user: str = Field(default="admin", min_length=1, max_length=64, pattern=r"^[^:,\s]+$")
    flower_password: SecretStr = SecretStr("")

    @model_validator(mode="after")
    def _heartbeat_within_lease(self) -> Settings:
        if self.heartbeat_seconds * 2 > self.lease_seconds:
            raise ValueError(
                "BATCHERY_HEARTBEAT_SECONDS must be at most half of BATCHERY_LEASE_SECONDS, so a live "
                "worker renews its leases at least twice per lease"
            )
        return self

    @model_validator(mode="after")
    def _auth_stays_on_in_production(self) -> Settings:
        if self.auth_disabled and self.environment == Environment.production:
            raise ValueError("BATCHERY_AUTH_DISABLED=true is refused when BATCHERY_ENVIRONMENT=production")
        return self

    # Workers and the queue
    default_max_tokens: int = Field(default=1024, ge=1)
    visibility_timeout_seconds: int = Field(default=6 * 3600, ge=60)
    # Off: a worker acknowledges its messages in its own memory only; the database is the ledger, and the
    # dispatcher re-sends what a dead worker held. On: kombu's ack emulation keeps every unacknowledged
    # message in Redis as well, and hands it out again after the visibility timeout
    # (README: "Acknowledgements and the visibility timeout")
    broker_ack_emulation: bool = False
    # A job, a webhook delivery or a batch run is leased for lease_seconds, and the worker's heartbeat
    # renews every lease it holds each heartbeat_seconds: a dead worker's work runs again about
    # lease_seconds after its death (docs/reliability.md: "Leases and heartbeats")
    lease_seconds: float = Field(default=30.0, gt=0)
    heartbeat_seconds: float = Field(default=5.0, gt=0)
    upstream_max_connections: int = Field(default=512, ge=1)
    # A worker holds a database connection only to claim a job and to store its outcome, never during
    # the upstream call, so a few serve hundreds of threads. None: 8 + threads // 50, at most 24
    # (workers.tasks.default_pool_size), with as many again opened for a burst and closed after.
    worker_db_pool_size: int | None = Field(default=None, ge=1, le=256)
    sweep_interval_seconds: float = Field(default=10.0, gt=0)
    resend_after_seconds: float = Field(default=300.0, gt=0)
    # The dispatcher and shutdown (docs/reliability.md)
    dispatch_window_factor: float = Field(default=2.0, gt=0, le=100)
    dispatch_interval_seconds: float = Field(default=1.0, gt=0, le=60)
    shutdown_grace_seconds: float = Field(default=60.0, ge=0)
    db_retry_seconds: float = Field(default=120.0, ge=0)
    # The provider's Batch API (README: "Provider Batch API"). Deferred jobs wait in groups (provider,
    # endpoint, model); a group is sent once it holds flush_size jobs or flush_bytes bytes of requests,
    # or its oldest waited flush_age seconds, at most max_lines lines and max_bytes bytes per file.
    # Provider batches are polled every poll_seconds, backing off to poll_max_seconds. A job falls back
    # to a live call only when at least live_margin_seconds remain before its deadline.
    provider_batch_flush_size: int = Field(default=1000, ge=1, le=50_000)
    provider_batch_flush_bytes: int = Field(default=64 * 1024 * 1024, ge=1024, le=200 * 1024 * 1024)
    provider_batch_flush_age_seconds: float = Field(default=60.0, ge=0)
    provider_batch_max_lines: int = Field(default=50_000, ge=1, le=50_000)
    provider_batch_max_bytes: int = Field(default=190 * 1024 * 1024, ge=1024, le=200 * 1024 * 1024)
    provider_batch_poll_seconds: float = Field(default=10.0, gt=0)
    provider_batch_poll_max_seconds: float = Field(default=300.0, gt=0)
    provider_batch_live_margin_seconds: float = Field(default=600.0, ge=0)

    # Webhooks (docs/webhooks.md). Secrets are whsec_<base64>; every one configured signs each attempt.
    webhook_secrets: Annotated[tuple[SecretStr, ...], NoDecode] = ()
    webhook_timeout_seconds: float = Field(default=15.0, gt=0, le=120)
    webhook_retry_schedule: Annotated[tuple[float, ...], NoDecode] = webhook_settings.DEFAULT_RETRY_SCHEDULE
    webhook_max_result_bytes: int = Field(default=256 * 1024, ge=0)
    webhook_allowed_networks: Annotated[tuple[IPv4Network | IPv6Network, ...], NoDecode] = ()
    webhook_poll_interval_seconds: float = Field(default=5.0, gt=0)
    webhook_concurrency: int = Field(default=16, ge=1, le=512)

    # Admission (api.admission): requests in flight per API process, by lane; the excess is refused at
    # once with 503 overloaded and Retry-After. Reads and writes have separate limits, so a polling
    # storm cannot take the submissions' slots. Health probes and /metrics are never refused.
    api_max_inflight_writes: int = Field(default=8, ge=1, le=10_000)
    api_max_inflight_reads: int = Field(default=64, ge=1, le=10_000)
    api_retry_after_seconds: int = Field(default=1, ge=1, le=3600)
    # A request that finds its lane full may wait this long for a slot, so a burst (a client's 40 calls
    # at once) or a pause of the process refuses nobody; 0 refuses at once. At most eight times the
    # limit wait, and once the lane knows its rate, no more than 0.1 s of its work (api.admission).
    api_admission_wait_ms: int = Field(default=1000, ge=0, le=10_000)
    # Drop-in OpenAI endpoints (README: "Drop-in OpenAI endpoints"): how long a call waits for its job
    # before answering 202 with the job (``x-batchery-timeout`` overrides it, up to the maximum), how
    # often a waiting API process checks the database for completions whose notice it missed, and how
    # long the final attempt's ``x-request-id`` is kept in Redis for the waiting call (every job's
    # outcome sets one key: this bounds them to about rate x TTL).
    openai_wait_seconds: float = Field(default=300.0, gt=0)
    openai_max_wait_seconds: float = Field(default=3600.0, gt=0)
    openai_poll_seconds: float = Field(default=5.0, gt=0, le=300)
    openai_notice_ttl_seconds: int = Field(default=60, ge=1)

    @field_validator("webhook_secrets", "webhook_allowed_networks", mode="before")
    @classmethod
    def _split_webhook_lists(cls, value: Any) -> Any:
        return webhook_settings.split_list(value)

    @field_validator("webhook_retry_schedule", mode="before")
    @classmethod
    def _parse_webhook_schedule(cls, value: Any) -> tuple[float, ...]:
        return webhook_settings.parse_schedule(value)

    @field_validator("webhook_secrets")
    @classmethod
    def _valid_webhook_secrets(cls, value: tuple[SecretStr, ...]) -> tuple[SecretStr, ...]:
        for secret in value:
            webhook_settings.decode_secret(secret.get_secret_value())
        return value

    @model_validator(mode="after")
    def _no_placeholder_webhook_secret_in_production(self) -> Settings:
        if self.environment == Environment.production and any(
            webhook_settings.is_placeholder_webhook_secret(secret.get_secret_value())
            for secret in self.webhook_secrets
        ):
            raise ValueError("BATCHERY_WEBHOOK_SECRETS holds a placeholder secret; generate a real one")
        return self

    @property
    def webhook_signing_keys(self) -> tuple[bytes, ...]:
        """The keys that sign webhooks; the development key outside production when none is set."""
        secrets = [secret.get_secret_value() for secret in self.webhook_secrets]
        if not secrets and self.environment != Environment.production:
            secrets = [webhook_settings.DEVELOPMENT_SECRET]
        return tuple(webhook_settings.decode_secret(secret) for secret in secrets)

    @field_validator("providers_json", mode="before")
    @classmethod
    def _decode_providers(cls, value: Any) -> Any:
        if isinstance(value, str):
            try:
                return json.loads(value) if value.strip() else {}
            except json.JSONDecodeError as exc:
                raise ValueError(f"not valid JSON: {exc.msg} at position {exc.pos}") from exc
        return value

    @field_validator("database_url")
    @classmethod
    def _valid_database_url(cls, value: str) -> str:
        if not value.startswith(("sqlite", "postgresql")):
            raise ValueError("only sqlite:// and postgresql:// URLs are supported")
        if value.startswith(("postgresql://", "postgres://")):
            return "postgresql+psycopg://" + value.split("://", 1)[1]
        return value

    @field_validator("redis_url")
    @classmethod
    def _valid_redis_url(cls, value: str) -> str:
        if not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must be a redis://, rediss:// or unix:// URL")
        return value

    @field_validator("openai_base_url")
    @classmethod
    def _valid_openai_base_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")

    @field_validator("tiers_file")
    @classmethod
    def _tiers_file_exists(cls, value: Path) -> Path:
        if not value.is_file():
            raise ValueError(f"no such file: {value}")
        return value

    @model_validator(mode="after")
    def _check_tiers_and_providers(self) -> Settings:
        tiers = self.tiers
        for tier in tiers.tiers.values():
            if tier.provider not in self.providers:
                raise ValueError(
                    f"tier {tier.name!r} uses provider {tier.provider!r}, which is not configured "
                    f"(known: {', '.join(sorted(self.providers))})"
                )
        return self

    @cached_property
    def providers(self) -> dict[str, Provider]:
        """Named providers; ``openai`` is built from OPENAI_BASE_URL and OPENAI_API_KEY unless overridden."""
        default = Provider(
            base_url=self.openai_base_url,
            api_key=self.openai_api_key,
            batch_endpoints=OPENAI_BATCH_ENDPOINTS,
        )
        return {"openai": default, **self.providers_json}

    @cached_property
    def tiers(self) -> TierConfig:
        return load_tiers(self.tiers_file)

    @property
    def has_provider_key(self) -> bool:
        return bool(self.openai_api_key.get_secret_value())

    def check_provider_keys(self) -> None:
        """In production, refuse to start when a tier's provider needs a key and has none: jobs would
        only fail upstream, one attempt after another."""
        if self.environment != Environment.production:
            return
        used = [(tier.name, tier.provider) for tier in self.tiers.tiers.values()]
        problems = missing_keys(self.providers, used)
        if problems:
            raise ConfigError("invalid configuration: " + "; ".join(problems))


def _env_name(location: str) -> str:
    """The variable behind an error's first location part: a field name or one of its aliases."""
    for name, info in Settings.model_fields.items():
        alias = info.validation_alias
        choices = [str(choice) for choice in alias.choices] if isinstance(alias, AliasChoices) else []
        if location == name or location in choices:
            return choices[0] if choices else f"BATCHERY_{name.upper()}"
    return f"BATCHERY_{location.upper()}"


def load_settings(**overrides: Any) -> Settings:
    """Build Settings, turning validation errors into one ConfigError that names each variable."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = [str(part) for part in err.get("loc", ())]
            name = _env_name(loc[0]) if loc else "settings"
            detail = ".".join(loc[1:])
            problems.append(f"{name}{'.' + detail if detail else ''}: {err.get('msg', 'invalid')}")
        raise ConfigError("invalid configuration: " + "; ".join(problems)) from exc


@cache
def get_settings() -> Settings:
    """The process's settings, read once on first use."""
    return load_settings()


def is_placeholder_secret(value: str) -> bool:
    return value.strip().lower() in _PLACEHOLDER_SECRETS
