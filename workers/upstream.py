"""The httpx client that calls OpenAI-compatible providers. Errors are mapped at this boundary.

One pooled ``httpx.Client`` per worker process. Provider keys travel only in headers and never
appear in errors: the exceptions raised here carry the status code and the upstream's error body.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from config.errors import BatcheryError
from config.providers import Provider
from workers.sharded_transport import ShardedTransport


class UpstreamError(BatcheryError):
    """The upstream call did not succeed."""

    retryable = True
    status_code: int | None = None
    error_type = "upstream_error"

    def __init__(
        self,
        message: str | None = None,
        *,
        headers: Mapping[str, str] | None = None,
        body: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.headers: Mapping[str, str] = headers or {}
        self.body = body


class UpstreamTimeout(UpstreamError):
    """The upstream did not answer within the tier's timeout."""

    error_type = "timeout"


class UpstreamConnectionError(UpstreamError):
    """Could not connect to the upstream."""

    error_type = "connection_error"


class UpstreamMalformed(UpstreamError):
    """The upstream answered 2xx with a body that is not a JSON object."""

    error_type = "malformed_response"


class UpstreamHTTPError(UpstreamError):
    """The upstream answered with an error status."""

    def __init__(
        self,
        status_code: int,
        *,
        headers: Mapping[str, str] | None = None,
        body: dict[str, Any] | None = None,
        text: str = "",
    ) -> None:
        detail = body.get("error") if isinstance(body, dict) else None
        detail = detail if isinstance(detail, dict) else {}
        message = str(detail.get("message") or text[:500] or f"upstream answered {status_code}")
        super().__init__(message, headers=headers, body=body)
        self.status_code = status_code
        self.code = str(detail.get("code") or detail.get("type") or "")
        self.error_type = str(detail.get("type") or f"http_{status_code}")
        self.text = text


@dataclass(frozen=True, slots=True)
class UpstreamResponse:
    status_code: int
    body: dict[str, Any]
    headers: Mapping[str, str] = field(default_factory=dict)


def make_upstream_client(*, max_connections: int) -> httpx.Client:
    """The process's pooled client. It ignores proxy variables and never follows redirects. Its
    connections are split into small pools (``workers.sharded_transport``), so that hundreds of calls
    in flight cost no more CPU each than a few."""
    return httpx.Client(
        transport=ShardedTransport(max_connections=max_connections),
        follow_redirects=False,
        trust_env=False,
        headers={"user-agent": "batchery"},
    )


def call(
    client: httpx.Client,
    provider: Provider,
    path: str,
    body: dict[str, Any],
    *,
    timeout: float,
    idempotency_key: str | None = None,
) -> UpstreamResponse:
    """POST ``body`` to ``provider``'s ``path``; raises an UpstreamError subclass unless it is 2xx."""
    headers = {**provider.request_headers(), "content-type": "application/json"}
    params = provider.query_params()
    if idempotency_key:
        headers["idempotency-key"] = idempotency_key
    try:
        response = client.post(
            provider.base_url + path,
            content=json.dumps(body, separators=(",", ":")),
            headers=headers,
            params=params,
            timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
        )
    except httpx.TimeoutException as exc:
        raise UpstreamTimeout(f"no answer within {timeout:g}s ({type(exc).__name__})") from exc
    except httpx.TransportError as exc:
        raise UpstreamConnectionError(f"could not reach the provider ({type(exc).__name__})") from exc
    parsed = json_object(response)
    if response.is_success:
        if parsed is None:
            raise UpstreamMalformed(headers=response.headers)
        return UpstreamResponse(response.status_code, parsed, response.headers)
    raise UpstreamHTTPError(
        response.status_code, headers=response.headers, body=parsed, text=response.text[:2000]
    )


def json_object(response: httpx.Response) -> dict[str, Any] | None:
    try:
        value = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    return value if isinstance(value, dict) else None
