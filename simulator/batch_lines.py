"""Answering the lines of a batch with the same planners that answer live calls, and the JSONL they become.

A line's body is planned when its batch is validated (so its admission tokens count towards the enqueued
limit) and answered when the batch reaches it. Bodies, usage and directives are those of a live call:
``"user": "sim:status=500"`` (or ``metadata.sim`` on ``/v1/responses``) fails the line with that status,
``times=N`` counts live and batch calls alike, ``quota`` gives a 429 ``insufficient_quota`` line, and an
invalid body is the 400 a live call would get. Latency, stalls and malformed answers do not apply; instead
``--batch-error-rate`` fails a share of lines with a random 500, 502 or 503. Rate limits do not apply
(the batch queue is separate from the live budgets).

Output and error lines (one JSON object per line)::

    {"id": "batch_req_...", "custom_id": "r1",
     "response": {"status_code": 200, "request_id": "req_...", "body": {...}}, "error": null}
    {"id": "batch_req_...", "custom_id": "r2",
     "response": {"status_code": 500, "request_id": "req_...", "body": {"error": {...}}}, "error": null}
    {"id": "batch_req_...", "custom_id": "r3", "response": null,
     "error": {"code": "batch_expired", "message": "..."}}       # or batch_cancelled
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from simulator.asgi import new_request_id
from simulator.batch_input import InputLine
from simulator.calls import CallContext, CallPlan, Usage
from simulator.chat import plan_chat
from simulator.directives import Directive, directive_text, parse_directive
from simulator.embeddings import plan_embeddings
from simulator.errors import ApiError, error_for_status, insufficient_quota
from simulator.images import plan_image_generation
from simulator.model_call import Endpoint
from simulator.responses_api import plan_response
from simulator.state import SimulatorState

BATCH_ENDPOINTS: dict[str, Endpoint] = {
    endpoint.path: endpoint
    for endpoint in (
        Endpoint("/v1/chat/completions", "chat", plan_chat),
        Endpoint("/v1/embeddings", "embeddings", plan_embeddings),
        Endpoint("/v1/responses", "responses", plan_response),
        Endpoint("/v1/images/generations", "images", plan_image_generation),
    )
}
NOT_RUN_MESSAGES = {
    "batch_expired": "This request could not be executed before the completion window expired.",
    "batch_cancelled": "This request was not executed because the batch was cancelled.",
}
_ERROR_STATUSES = (500, 502, 503)


@dataclass(frozen=True, slots=True)
class PlannedLine:
    """A validated input line with its plan, or the error that its body earns."""

    line: InputLine
    plan: CallPlan | None
    error: ApiError | None
    directive: Directive | None

    @property
    def tokens(self) -> int:
        return self.plan.charge.tokens if self.plan is not None else 0


@dataclass(frozen=True, slots=True)
class LineAnswer:
    """What one answered line produced: its output-file JSON, status and usage."""

    record: dict[str, Any]
    status: int
    usage: Usage | None
    cached_tokens: int = 0
    reasoning_tokens: int = 0


def plan_line(state: SimulatorState, endpoint: Endpoint, line: InputLine, base_url: str) -> PlannedLine:
    """Plan one line as a live call would be planned; an invalid body or directive becomes its error."""
    directive: Directive | None = None
    try:
        found = directive_text(line.body, endpoint.name)
        if found is not None:
            directive = parse_directive(*found)
        model = str(line.body["model"])
        ctx = CallContext(model, state.settings.default_max_tokens, state.prompt_cache, base_url)
        return PlannedLine(line, endpoint.planner(line.body, ctx), None, directive)
    except ApiError as exc:
        return PlannedLine(line, None, exc, directive)


def answer_line(state: SimulatorState, planned: PlannedLine) -> LineAnswer:
    """Answer a planned line now (directives and ``--batch-error-rate`` decide its failures)."""
    directive = planned.directive
    try:
        if planned.error is not None:
            raise planned.error
        if state.settings.quota_exceeded or (directive is not None and directive.quota):
            raise insufficient_quota()
        if directive is not None and state.failures.should_fail(directive) and directive.status is not None:
            raise error_for_status(directive.status, directive.retry_after)
        rate = state.settings.batch_error_rate
        if rate and state.rng.random() < rate:
            raise error_for_status(state.rng.choice(_ERROR_STATUSES))
        assert planned.plan is not None
        body, usage = planned.plan.render()
    except ApiError as exc:
        return LineAnswer(response_record(planned.line.custom_id, exc.status, exc.body()), exc.status, None)
    cached, reasoning = _usage_details(body)
    return LineAnswer(response_record(planned.line.custom_id, 200, body), 200, usage, cached, reasoning)


def response_record(custom_id: str, status: int, body: dict[str, Any]) -> dict[str, Any]:
    """An output or error line for a request that got an HTTP answer."""
    return {
        "id": new_batch_request_id(),
        "custom_id": custom_id,
        "response": {"status_code": status, "request_id": new_request_id(), "body": body},
        "error": None,
    }


def not_run_record(custom_id: str, code: str) -> dict[str, Any]:
    """An error line for a request never run: ``batch_expired`` or ``batch_cancelled``."""
    return {
        "id": new_batch_request_id(),
        "custom_id": custom_id,
        "response": None,
        "error": {"code": code, "message": NOT_RUN_MESSAGES[code]},
    }


def new_batch_request_id() -> str:
    return "batch_req_" + os.urandom(12).hex()


def _usage_details(body: dict[str, Any]) -> tuple[int, int]:
    """Cached prompt tokens and reasoning tokens a success body reports (chat or Responses shape)."""
    usage = body.get("usage")
    if not isinstance(usage, dict):
        return 0, 0
    prompt = usage.get("prompt_tokens_details") or usage.get("input_tokens_details") or {}
    completion = usage.get("completion_tokens_details") or usage.get("output_tokens_details") or {}
    cached = prompt.get("cached_tokens", 0) if isinstance(prompt, dict) else 0
    reasoning = completion.get("reasoning_tokens", 0) if isinstance(completion, dict) else 0
    return int(cached or 0), int(reasoning or 0)
