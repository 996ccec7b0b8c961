"""A streamed upstream call (``stream: true`` chat, vision and Responses jobs): read the server-sent
events as they come, relay each one (``workers.stream_relay``), and aggregate them into the object a
non-streamed call answers (``domain.jobs.stream_aggregate``).

Errors map as for a plain call (``workers.upstream``): an error status or a failed connection before
the first event is an ordinary, retryable or final, ``UpstreamError``, and the waiting caller sees
nothing of it. Once events were relayed, a failure ends the relayed stream with an error event, as
OpenAI ends one, and the job's attempt fails as any attempt does (``UpstreamStreamError`` for the
upstream's own error event, retryable).
"""

from __future__ import annotations

import json
from typing import Any

import httpx
from httpx_sse import EventSource, SSEError

from config.providers import Provider
from domain.jobs.stream_aggregate import StreamFailed, StreamIncomplete, error_event, stream_aggregate
from workers.stream_relay import JobRelay
from workers.upstream import (
    UpstreamConnectionError,
    UpstreamError,
    UpstreamHTTPError,
    UpstreamMalformed,
    UpstreamResponse,
    UpstreamTimeout,
    json_object,
)

DONE = "[DONE]"


class UpstreamStreamError(UpstreamError):
    """The upstream sent an error event in the middle of its stream."""

    error_type = "stream_error"


def call_streamed(
    client: httpx.Client,
    provider: Provider,
    path: str,
    body: dict[str, Any],
    *,
    kind: str,
    timeout: float,
    relay: JobRelay | None,
) -> UpstreamResponse:
    """POST ``body`` (with ``stream: true``) and return the aggregated answer; raises an UpstreamError
    subclass as ``workers.upstream.call`` does."""
    headers = {
        **provider.request_headers(),
        "content-type": "application/json",
        "accept": "text/event-stream",
    }
    try:
        with client.stream(
            "POST",
            provider.base_url + path,
            content=json.dumps(body, separators=(",", ":")),
            headers=headers,
            params=provider.query_params(),
            timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
        ) as response:
            return _read(response, kind, relay)
    except UpstreamError as exc:
        _end_with_error(relay, exc, kind)
        raise
    except httpx.TimeoutException as exc:
        error: UpstreamError = UpstreamTimeout(f"no answer within {timeout:g}s ({type(exc).__name__})")
        _end_with_error(relay, error, kind)
        raise error from exc
    except httpx.TransportError as exc:
        error = UpstreamConnectionError(f"the provider's stream broke off ({type(exc).__name__})")
        _end_with_error(relay, error, kind)
        raise error from exc


def _read(response: httpx.Response, kind: str, relay: JobRelay | None) -> UpstreamResponse:
    if not response.is_success:
        response.read()
        raise UpstreamHTTPError(
            response.status_code,
            headers=response.headers,
            body=json_object(response),
            text=response.text[:2000],
        )
    if "text/event-stream" not in response.headers.get("content-type", ""):
        response.read()  # a provider that ignores ``stream`` answers the whole object
        parsed = json_object(response)
        if parsed is None:
            raise UpstreamMalformed(headers=response.headers)
        return UpstreamResponse(response.status_code, parsed, response.headers)
    aggregate = stream_aggregate(kind)
    try:
        for sse in EventSource(response).iter_sse():
            if sse.data == DONE:
                break
            try:
                data = json.loads(sse.data)
            except ValueError:
                raise UpstreamMalformed("the provider's stream held an event that is not JSON") from None
            if not isinstance(data, dict):
                raise UpstreamMalformed("the provider's stream held an event that is not a JSON object")
            if relay is not None:
                relay.event(sse.event if sse.event != "message" else None, sse.data)
            aggregate.add(data)
        result = aggregate.result()
    except StreamFailed as exc:
        raise UpstreamStreamError(str(exc), headers=response.headers, body=exc.body) from None
    except (StreamIncomplete, SSEError) as exc:
        raise UpstreamMalformed(
            f"the provider's stream ended early: {exc}", headers=response.headers
        ) from None
    if relay is not None:
        relay.end()
    return UpstreamResponse(response.status_code, result, response.headers)


def _end_with_error(relay: JobRelay | None, error: UpstreamError, kind: str) -> None:
    """After relayed events, end the relayed stream with an error event (before any, relay nothing: the
    attempt's retry, or the job's stored error, is what the caller gets)."""
    if relay is None or relay.sent == 0:
        return
    if not isinstance(error, UpstreamStreamError):  # the upstream's own error event was relayed already
        relay.event(*error_event(kind, str(error), error.error_type))
    relay.end()
