"""OpenAI-compatible providers: where each one is, how it takes its key, and which headers it wants.

``BATCHERY_PROVIDERS`` is a JSON object of named providers; ``openai`` is built from ``OPENAI_BASE_URL``
and ``OPENAI_API_KEY`` unless the object names it::

    {"azure": {"base_url": "https://my-res.openai.azure.com/openai/v1", "auth": "api-key",
               "api_key_env": "AZURE_OPENAI_API_KEY"},
     "gw":    {"base_url": "https://gw.example/v1/api/openai", "auth": "x-api-key",
               "api_key_env": "GATEWAY_KEY", "headers": {"X-Team": "search"}}}

- ``api_key`` holds the key inline; ``api_key_env`` names the variable to read it from instead (never
  both), from the environment or ``.env``.
- ``auth``: ``bearer`` (``Authorization: Bearer <key>``, the default), ``api-key`` (Azure's ``api-key``
  header), ``x-api-key`` (gateways), or ``none`` (a local server that takes no key).
- ``api_version``: sent as the ``api-version`` query parameter when given (Azure's deployment-style
  endpoints need one; its ``/openai/v1`` endpoints take none).
- ``headers``: static extra headers, such as ``OpenAI-Organization``, ``OpenAI-Project`` or a gateway's
  own. Their values are kept as secrets: they never show in a repr, a log line or an error.
- ``batch_endpoints``: the endpoints the provider's own Batch API (``/v1/files`` + ``/v1/batches``) serves,
  such as ``["/v1/chat/completions", "/v1/embeddings"]``. Empty (the default for a named provider): it
  has none, and every job runs live. The built-in ``openai`` provider serves ``OPENAI_BATCH_ENDPOINTS``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from typing import Any, Literal

from dotenv import dotenv_values
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

AuthStyle = Literal["bearer", "api-key", "x-api-key", "none"]
_KEY_HEADER = {"bearer": "authorization", "api-key": "api-key", "x-api-key": "x-api-key"}
# headers the client sets itself, per call
_RESERVED_HEADERS = frozenset(
    {"host", "content-length", "content-type", "transfer-encoding", "connection", "idempotency-key"}
)
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,128}$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
OPENAI_BATCH_ENDPOINTS = ("/v1/chat/completions", "/v1/embeddings", "/v1/responses")
"""What OpenAI's Batch API serves that batchery sends there (images are not batchable)."""


class Provider(BaseModel):
    """An OpenAI-compatible upstream: where it is and how it wants its key."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    base_url: str
    api_key: SecretStr = SecretStr("")
    api_key_env: str | None = None
    auth: AuthStyle = "bearer"
    api_version: str | None = Field(default=None, min_length=1, max_length=64)
    headers: dict[str, SecretStr] = Field(default_factory=dict)
    batch_endpoints: tuple[str, ...] = ()

    @model_validator(mode="before")
    @classmethod
    def _read_key_from_environment(cls, data: Any) -> Any:
        if not isinstance(data, Mapping) or data.get("api_key_env") is None:
            return data
        name = data["api_key_env"]
        if not isinstance(name, str) or not _ENV_NAME.match(name):
            raise ValueError("api_key_env must be the name of an environment variable")
        if data.get("api_key"):
            raise ValueError("give api_key or api_key_env, not both")
        key = os.environ.get(name) or dotenv_values(".env").get(name) or ""  # as settings read them
        if not key.strip():
            raise ValueError(f"api_key_env names {name}, which is not set or empty")
        return {**data, "api_key": key.strip()}

    @field_validator("base_url")
    @classmethod
    def _valid_base_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("base_url must start with http:// or https://")
        return value.rstrip("/")

    @field_validator("headers")
    @classmethod
    def _valid_headers(cls, value: dict[str, SecretStr]) -> dict[str, SecretStr]:
        for name, header in value.items():
            if not _HEADER_NAME.match(name):
                raise ValueError(f"header name {name!r} is not a valid HTTP header name")
            if name.lower() in _RESERVED_HEADERS:
                raise ValueError(f"header {name!r} is set by batchery itself")
            text = header.get_secret_value()
            if any(char in text for char in "\r\n\0") or len(text) > 8192:
                raise ValueError(f"header {name!r}: the value must be one line of at most 8192 characters")
        return value

    @model_validator(mode="after")
    def _auth_consistent(self) -> Provider:
        if self.auth == "none" and self.api_key.get_secret_value():
            raise ValueError("auth 'none' sends no key: remove the key, or choose another auth style")
        key_header = _KEY_HEADER.get(self.auth)
        if key_header is not None and any(name.lower() == key_header for name in self.headers):
            raise ValueError(f"header {key_header!r} is the one auth {self.auth!r} sets from the key")
        return self

    @field_validator("batch_endpoints")
    @classmethod
    def _known_batch_endpoints(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = sorted(set(value) - set(OPENAI_BATCH_ENDPOINTS))
        if unknown:
            raise ValueError(
                f"batch_endpoints: {', '.join(unknown)} not one of {', '.join(OPENAI_BATCH_ENDPOINTS)}"
            )
        return value

    def serves_batch(self, endpoint: str) -> bool:
        """Whether the provider's Batch API takes requests for ``endpoint`` (``/v1/chat/completions``)."""
        return endpoint in self.batch_endpoints

    @property
    def needs_key(self) -> bool:
        return self.auth != "none"

    def request_headers(self) -> dict[str, str]:
        """The headers every call to this provider carries: the static ones, then the key's."""
        headers = {name: value.get_secret_value() for name, value in self.headers.items()}
        key = self.api_key.get_secret_value()
        if key and self.auth == "bearer":
            headers["authorization"] = f"Bearer {key}"
        elif key and self.auth in ("api-key", "x-api-key"):
            headers[self.auth] = key
        return headers

    def query_params(self) -> dict[str, str]:
        return {"api-version": self.api_version} if self.api_version else {}

    def secret_values(self) -> list[str]:
        """Every secret this provider holds (its key and header values), to scrub from any text."""
        values = [self.api_key.get_secret_value(), *(v.get_secret_value() for v in self.headers.values())]
        return [value for value in values if len(value) >= 8]


def missing_keys(providers: Mapping[str, Provider], used: Iterable[tuple[str, str]]) -> list[str]:
    """For each provider a tier uses (``(tier, provider)`` pairs) that needs a key and has none, a line
    naming the variable to set."""
    tiers_of: dict[str, list[str]] = {}
    for tier, name in used:
        tiers_of.setdefault(name, []).append(tier)
    problems = []
    for name, tiers in sorted(tiers_of.items()):
        provider = providers.get(name)
        if provider is None or not provider.needs_key or provider.api_key.get_secret_value():
            continue
        where = "OPENAI_API_KEY" if name == "openai" else f"BATCHERY_PROVIDERS.{name}.api_key_env"
        problems.append(
            f"{where}: provider {name!r} has no API key, and tiers {', '.join(tiers)} use it "
            f"(give it one, or auth 'none' for a server that takes no key)"
        )
    return problems
