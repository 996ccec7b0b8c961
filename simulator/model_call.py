"""One call to a model endpoint, from headers to answer.

The order is that of a hosted API: authentication; JSON body; model lookup (404 for unknown models);
request validation (400); quota (429 ``insufficient_quota``); forced directive errors; rate limiting
(429 ``rate_limit_exceeded``, with ``x-ratelimit-*`` headers on every answer from then on); latency,
stalls and random faults; the success body. Every answer carries ``x-request-id`` and
``openai-processing-ms``. A streamed call (``stream: true``) goes through the same steps, so its errors
are ordinary JSON answers; its first event leaves after the latency, the next ones ``stream_chunk_ms``
apart (see ``simulator.streaming``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from simulator.asgi import (
    BodyTooLargeError,
    Receive,
    Scope,
    Send,
    dumps,
    header_values,
    new_request_id,
    read_body,
    send_bytes,
    send_event_stream,
)
from simulator.calls import CallContext, CallPlan, Usage
from simulator.directives import Directive, directive_text, parse_directive
from simulator.errors import (
    ApiError,
    error_for_status,
    incorrect_api_key,
    insufficient_quota,
    invalid_request,
    missing_api_key,
    missing_parameter,
    model_not_found,
)
from simulator.faults import plan_faults
from simulator.limit_answers import ratelimit_headers, rejection_error
from simulator.state import SimulatorState
from simulator.stats import CallRecord
from simulator.streaming import stream_script

Planner = Callable[[Mapping[str, Any], CallContext], CallPlan]
_LOG = logging.getLogger("simulator")
_WANTED_HEADERS = frozenset({b"authorization", b"api-key", b"x-api-key", b"host", b"x-client-request-id"})
# where a key may travel, in the order a hosted API looks: Bearer, Azure's api-key, a gateway's x-api-key
_KEY_HEADERS = ((b"authorization", "bearer"), (b"api-key", "api-key"), (b"x-api-key", "x-api-key"))
# headers every client sends; the others are recorded with each call (GET /_requests), so a test can
# see what a provider's configuration put on the wire
_PLAIN_HEADERS = frozenset(
    {b"host", b"content-type", b"content-length", b"user-agent", b"accept", b"accept-encoding", b"connection"}
)


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A model endpoint: its canonical path, short name and planner."""

    path: str
    name: str
    planner: Planner


@dataclass(slots=True)
class CallOutcome:
    """What is known about a call as it goes, for the statistics."""

    model: str = "(none)"
    user: str | None = None
    rate_limited: bool = False
    tokens_charged: int = 0
    usage: Usage | None = None
    streamed: bool = False


async def serve_model_call(
    state: SimulatorState, endpoint: Endpoint, scope: Scope, receive: Receive, send: Send
) -> None:
    """Answer one call to ``endpoint`` and record it."""
    started = time.perf_counter()
    request_id = new_request_id()
    headers = header_values(scope, _WANTED_HEADERS)
    outcome = CallOutcome()
    limit_headers: dict[str, str] = {}
    status = 500
    state.stats.started()
    try:
        try:
            payload = await _answer(state, endpoint, scope, receive, headers, outcome, limit_headers)
            status = 200
            if isinstance(payload, bytes):
                await send_bytes(
                    send, 200, payload, _common_headers(started, limit_headers), request_id=request_id
                )
            else:
                common = _common_headers(started, limit_headers)
                await _stream(state, send, receive, payload, common, request_id, outcome)
        except ApiError as exc:
            status = exc.status
            extra = {**limit_headers, **exc.headers}
            await send_bytes(
                send, status, dumps(exc.body()), _common_headers(started, extra), request_id=request_id
            )
        except Exception:
            _LOG.exception("simulator failed on %s", endpoint.path)
            error = error_for_status(500)
            await send_bytes(
                send, 500, dumps(error.body()), _common_headers(started, {}), request_id=request_id
            )
    finally:
        state.stats.finished(
            CallRecord(
                request_id=request_id,
                endpoint=endpoint.path,
                model=outcome.model,
                status=status,
                user=outcome.user,
                client_request_id=headers.get(b"x-client-request-id"),
                rate_limited=outcome.rate_limited,
                tokens_charged=outcome.tokens_charged,
                usage=outcome.usage if status == 200 else None,
                streamed=outcome.streamed,
                duration_ms=(time.perf_counter() - started) * 1000,
                path=scope["path"],
                query=scope.get("query_string", b"").decode("latin-1"),
                auth=_key_style(headers),
                headers=_extra_headers(scope),
            )
        )


async def _answer(
    state: SimulatorState,
    endpoint: Endpoint,
    scope: Scope,
    receive: Receive,
    headers: Mapping[bytes, str],
    outcome: CallOutcome,
    limit_headers: dict[str, str],
) -> bytes | list[bytes]:
    """The success payload (the frames of an event stream), or an ApiError for every other answer."""
    _authenticate(headers, state.settings.require_key)
    body = await _json_body(receive)
    model = _model_of(body, scope["path"])
    outcome.model = model
    outcome.user = body.get("user") if isinstance(body.get("user"), str) else None
    directive = _directive(body, endpoint.name)
    rule = state.table.rule_for(model)
    if rule is None:
        raise model_not_found(model)
    settings = state.settings
    ctx = CallContext(model, settings.default_max_tokens, state.prompt_cache, _base_url(scope, headers))
    plan = endpoint.planner(body, ctx)
    if settings.quota_exceeded or (directive is not None and directive.quota):
        raise insufficient_quota()
    forced = directive is not None and state.failures.should_fail(directive)
    if not forced and not settings.no_limits and not rule.limits.unlimited:
        decision = state.limiter.acquire(rule.bucket, rule.limits, plan.charge)
        limit_headers.update(ratelimit_headers(decision.states))
        if decision.rejection is not None:
            outcome.rate_limited = True
            raise rejection_error(model, decision.rejection)
    if not forced:
        outcome.tokens_charged = plan.charge.tokens
    faults = plan_faults(settings, directive, state.rng)
    if faults.delay_seconds > 0:
        await asyncio.sleep(faults.delay_seconds)
    if forced and directive is not None and directive.status is not None:
        raise error_for_status(directive.status, directive.retry_after)
    if faults.error_status is not None:
        raise error_for_status(faults.error_status)
    answer, usage = plan.render()
    if plan.stream is not None:
        outcome.streamed = True
        error_after = directive.stream_error_after if directive is not None else None
        frames, completes = stream_script(
            plan.stream.frames(answer), plan.stream, error_after, faults.malformed
        )
        outcome.usage = usage if completes else None
        return frames
    payload = dumps(answer)
    if faults.malformed:
        return payload[: max(1, len(payload) // 2)]
    outcome.usage = usage
    return payload


async def _stream(
    state: SimulatorState,
    send: Send,
    receive: Receive,
    frames: list[bytes],
    headers: list[tuple[str, str]],
    request_id: str,
    outcome: CallOutcome,
) -> None:
    """Send an event stream; a client that goes away midway only ends it (no usage is counted then)."""
    pause = state.settings.stream_chunk_ms / 1000.0
    try:
        finished = await send_event_stream(send, receive, frames, headers, request_id, pause)
    except Exception:
        _LOG.debug("a streamed answer ended early", exc_info=True)
        finished = False
    if not finished:
        outcome.usage = None


def check_api_key(scope: Scope, required: str | None) -> None:
    """401 ApiError unless the request carries a key (``required`` when set), as for a model call."""
    _authenticate(header_values(scope, _WANTED_HEADERS), required)


def request_base_url(scope: Scope) -> str:
    """Where the client reached the simulator, e.g. ``http://127.0.0.1:8100``."""
    return _base_url(scope, header_values(scope, _WANTED_HEADERS))


def _authenticate(headers: Mapping[bytes, str], required: str | None) -> None:
    key = _key_of(headers)
    if not key:
        raise missing_api_key()
    if required is not None and key != required:
        raise incorrect_api_key(key)


def _key_of(headers: Mapping[bytes, str]) -> str:
    style = _key_style(headers)
    if style == "bearer":
        return headers[b"authorization"].partition(" ")[2].strip()
    return headers.get(b"api-key" if style == "api-key" else b"x-api-key", "").strip()


def _key_style(headers: Mapping[bytes, str]) -> str | None:
    """Which header carries the caller's key, if any."""
    for name, style in _KEY_HEADERS:
        value = headers.get(name, "")
        if style == "bearer":
            scheme, _, token = value.partition(" ")
            value = token if scheme.lower() == "bearer" else ""
        if value.strip():
            return style
    return None


def _extra_headers(scope: Scope) -> tuple[tuple[str, str], ...]:
    """The request's headers beyond the plain ones; keys are masked."""
    kept = []
    for raw_name, raw_value in scope["headers"]:
        if raw_name in _PLAIN_HEADERS:
            continue
        masked = raw_name in (b"authorization", b"api-key", b"x-api-key")
        kept.append((raw_name.decode("latin-1"), "***" if masked else raw_value.decode("latin-1")))
    return tuple(kept)


async def _json_body(receive: Receive) -> dict[str, Any]:
    try:
        raw = await read_body(receive)
    except BodyTooLargeError:
        raise ApiError(
            413, "The request body is too large.", "invalid_request_error", None, "request_too_large"
        ) from None
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise invalid_request(
            "We could not parse the JSON body of your request. (HINT: This likely means you aren't using "
            "your HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was not "
            "valid JSON.)"
        ) from None
    if not isinstance(body, dict):
        raise invalid_request("The request body must be a JSON object.")
    return body


def _model_of(body: Mapping[str, Any], path: str) -> str:
    """The ``model`` of the body, or for Azure-style paths the deployment name."""
    model = body.get("model")
    if model is None and "/deployments/" in path:
        model = path.split("/deployments/", 1)[1].split("/", 1)[0] or None
    if model is None:
        raise missing_parameter("model")
    if not isinstance(model, str) or not model:
        raise invalid_request("Invalid 'model': expected a non-empty string.", "model", "invalid_type")
    return model


def _directive(body: Mapping[str, Any], endpoint_name: str) -> Directive | None:
    found = directive_text(body, endpoint_name)
    if found is None:
        return None
    text, field = found
    return parse_directive(text, field)


def _base_url(scope: Scope, headers: Mapping[bytes, str]) -> str:
    host = headers.get(b"host")
    if not host:
        server = scope.get("server") or ("127.0.0.1", 80)
        host = f"{server[0]}:{server[1]}"
    return f"{scope.get('scheme', 'http')}://{host}"


def _common_headers(started: float, extra: Mapping[str, str]) -> list[tuple[str, str]]:
    headers = [("openai-processing-ms", str(int((time.perf_counter() - started) * 1000)))]
    headers.extend(extra.items())
    return headers
