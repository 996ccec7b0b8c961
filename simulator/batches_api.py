"""OpenAI's Batch API (and the Files API it reads and writes), answered from memory on the wall clock.

=====================================  ==================================================================
``POST /v1/batches``                   ``{input_file_id, endpoint, completion_window:"24h", metadata?,
                                       output_expires_after?}``; endpoint ``/v1/chat/completions``,
                                       ``/v1/embeddings``, ``/v1/responses`` or ``/v1/images/generations``;
                                       answers the batch object (``validating``)
``GET /v1/batches``                    ``?after=&limit=`` (1 to 100, default 20), newest first
``GET /v1/batches/{id}``               the batch object
``POST /v1/batches/{id}/cancel``       ``cancelling`` (409 once finalizing or done)
=====================================  ==================================================================

Every batch and file call needs an API key, as model calls do. Batches move on the wall clock (see
``simulator.batch_lifecycle`` for the phases and ``--batch-*-seconds`` for their durations); every call
here and ``GET /_stats`` first bring every batch up to date. Lines are answered by ``simulator.batch_lines``.

Faults: a batch created with ``metadata.sim = "expire"`` (or ``"expire_after=K"``), or one of the next N
after ``POST /_control {"expire_next_batches": N}``, answers only half of its lines (K with
``expire_after``) and ends ``expired``. A model's enqueued tokens (admission tokens of its batches in
progress) above ``--batch-enqueued-tokens`` fail the new batch with ``token_limit_exceeded``.
"""

from __future__ import annotations

import json
import os
from typing import Any

from simulator.asgi import BodyTooLargeError, Receive, Scope, Send, read_body, send_json
from simulator.batch_input import batch_error, check_batch_input
from simulator.batch_lifecycle import (
    ACTIVE_STATUSES,
    FINAL_STATUSES,
    SimBatch,
    advance_batch,
    batch_object,
    cancel_batch,
)
from simulator.batch_lines import BATCH_ENDPOINTS, PlannedLine, answer_line, not_run_record, plan_line
from simulator.errors import ApiError, invalid_request, missing_parameter
from simulator.files_api import list_page, query_limit, query_of, serve_files
from simulator.model_call import check_api_key, request_base_url
from simulator.state import SimulatorState

_MAX_METADATA = 16


class _Hooks:
    """The simulator's side of the batch lifecycle."""

    def __init__(self, state: SimulatorState) -> None:
        self.state = state

    def limit_errors(self, batch: SimBatch, moment: float) -> list[dict[str, Any]]:
        limit = self.state.settings.batch_enqueued_tokens
        if not limit:
            return []
        held = sum(
            other.tokens
            for other in self.state.batches.values()
            if other is not batch and other.model == batch.model and other.holds_tokens_at(moment)
        )
        if held + batch.tokens <= limit:
            return []
        message = (
            f"Enqueued token limit reached for {batch.model} in organization org-sim. Limit: {limit:,} "
            f"enqueued tokens. Please try again once some in_progress batches have been completed."
        )
        return [batch_error("token_limit_exceeded", message)]

    def answer(self, batch: SimBatch, index: int) -> tuple[dict[str, Any], bool]:
        planned: PlannedLine = batch.planned[index]
        answer = answer_line(self.state, planned)
        succeeded = answer.status == 200
        self.state.stats.batch_line(batch.model or "(none)", succeeded, answer.usage)
        if answer.usage is not None:
            batch.usage["input"] += answer.usage.prompt_tokens
            batch.usage["output"] += answer.usage.completion_tokens
            batch.usage["cached"] += answer.cached_tokens
            batch.usage["reasoning"] += answer.reasoning_tokens
        return answer.record, succeeded

    def not_run(self, batch: SimBatch, index: int, code: str) -> dict[str, Any]:
        self.state.stats.batch_not_run += 1
        planned: PlannedLine = batch.planned[index]
        return not_run_record(planned.line.custom_id, code)

    def write_files(self, batch: SimBatch) -> None:
        files = self.state.files
        if batch.output:
            content = _jsonl(batch.output)
            batch.output_file_id = files.add(f"batch_{batch.id}_output.jsonl", "batch_output", content).id
        if batch.error_lines:
            content = _jsonl(batch.error_lines)
            batch.error_file_id = files.add(f"batch_{batch.id}_error.jsonl", "batch_output", content).id


def advance_batches(state: SimulatorState) -> None:
    """Bring every unfinished batch up to the wall clock, oldest first."""
    now = state.wall_clock()
    hooks = _Hooks(state)
    for batch in state.batches.values():
        if batch.status in ACTIVE_STATUSES:
            advance_batch(batch, now, hooks)


def batch_summary(state: SimulatorState) -> dict[str, Any]:
    """The files held and the batches by status, for ``GET /_stats``."""
    advance_batches(state)
    counts = dict.fromkeys((*ACTIVE_STATUSES, *FINAL_STATUSES), 0)
    for batch in state.batches.values():
        counts[batch.status] += 1
    return {"files": len(state.files), "batches": counts}


async def serve_batch_api(
    state: SimulatorState, method: str, scope: Scope, receive: Receive, send: Send
) -> bool:
    """Answer a ``/v1/files`` or ``/v1/batches`` call; False when the path is neither."""
    path: str = scope["path"]
    trimmed = path.removeprefix("/v1")
    files = trimmed == "/files" or trimmed.startswith("/files/")
    batches = trimmed == "/batches" or trimmed.startswith("/batches/")
    if not files and not batches:
        return False
    try:
        check_api_key(scope, state.settings.require_key)
        advance_batches(state)
        if files:
            rest = trimmed.removeprefix("/files")
            await serve_files(state.files, state.settings.files_max_bytes, method, rest, scope, receive, send)
        else:
            await _serve_batches(state, method, trimmed.removeprefix("/batches"), scope, receive, send)
    except ApiError as exc:
        await send_json(send, exc.status, exc.body(), exc.headers.items())
    return True


async def _serve_batches(
    state: SimulatorState, method: str, rest: str, scope: Scope, receive: Receive, send: Send
) -> None:
    parts = [part for part in rest.split("/") if part]
    if not parts and method == "POST":
        batch = _create(state, await _json_object(receive), request_base_url(scope))
        await send_json(send, 200, batch_object(batch))
    elif not parts and method == "GET":
        query = query_of(scope)
        newest_first = [batch_object(batch) for batch in reversed(state.batches.values())]
        page = list_page(newest_first, query.get("after", [None])[0], query_limit(query, 20, 100))
        await send_json(send, 200, page)
    elif len(parts) == 1 and method == "GET":
        await send_json(send, 200, batch_object(_get(state, parts[0])))
    elif len(parts) == 2 and parts[1] == "cancel" and method == "POST":
        batch = _get(state, parts[0])
        if not cancel_batch(batch, state.wall_clock(), _Hooks(state)):
            message = f"Cannot cancel a batch with status '{batch.status}'."
            raise ApiError(409, message, "invalid_request_error", None, "batch_not_cancellable")
        await send_json(send, 200, batch_object(batch))
    else:
        raise ApiError(404 if len(parts) > 2 else 405, f"Invalid URL ({method} {scope['path']})")


def _get(state: SimulatorState, batch_id: str) -> SimBatch:
    batch = state.batches.get(batch_id)
    if batch is None:
        raise ApiError(404, f"No batch found with id '{batch_id}'.", "invalid_request_error", "batch_id")
    return batch


def _create(state: SimulatorState, body: dict[str, Any], base_url: str) -> SimBatch:
    """Check a create request and store the new batch (its input is checked now, revealed on validation)."""
    for name in ("input_file_id", "endpoint", "completion_window"):
        if name not in body:
            raise missing_parameter(name)
        if not isinstance(body[name], str):
            raise invalid_request(f"Invalid '{name}': expected a string.", name, "invalid_type")
    endpoint = BATCH_ENDPOINTS.get(body["endpoint"])
    if endpoint is None:
        allowed = ", ".join(BATCH_ENDPOINTS)
        message = f"Invalid 'endpoint': expected one of {allowed}, got '{body['endpoint']}'."
        raise invalid_request(message, "endpoint", "invalid_value")
    if body["completion_window"] != "24h":
        message = f"Invalid 'completion_window': expected '24h', got '{body['completion_window']}'."
        raise invalid_request(message, "completion_window", "invalid_value")
    metadata = _metadata(body.get("metadata"))
    stored = state.files.get(body["input_file_id"])
    if stored.purpose != "batch":
        message = f"The input file {stored.id} must have purpose 'batch', not '{stored.purpose}'."
        raise invalid_request(message, "input_file_id", "invalid_value")
    batch = SimBatch(
        "batch_" + os.urandom(12).hex(),
        endpoint.path,
        stored.id,
        "24h",
        metadata,
        state.wall_clock(),
        state.batch_timings(),
    )
    checked = check_batch_input(stored.content, endpoint.path)
    batch.model = checked.model
    batch.input_errors = checked.errors
    if checked.valid and state.table.rule_for(checked.model or "") is None:
        message = f"The model `{checked.model}` does not exist or you do not have access to it."
        batch.input_errors = [batch_error("model_not_found", message, "body.model", checked.lines[0].number)]
    if not batch.input_errors:
        batch.planned = [plan_line(state, endpoint, line, base_url) for line in checked.lines]
        batch.tokens = sum(planned.tokens for planned in batch.planned)
        batch.expire_after = _expire_after(state, metadata, len(batch.planned))
    state.batches[batch.id] = batch
    return batch


def _expire_after(state: SimulatorState, metadata: dict[str, str] | None, lines: int) -> int | None:
    """How many lines a batch told to expire answers first; None for a batch that does not expire."""
    directive = (metadata or {}).get("sim", "").strip().removeprefix("sim:").strip()
    if directive == "expire":
        return lines // 2
    name, sep, value = directive.partition("=")
    if sep and name.strip() == "expire_after":
        try:
            return max(0, int(value))
        except ValueError:
            raise invalid_request(
                f"Invalid simulator directive 'metadata.sim': {directive!r}.", "metadata.sim", "invalid_value"
            ) from None
    if directive:
        message = f"Invalid simulator directive 'metadata.sim': {directive!r} (expire or expire_after=K)."
        raise invalid_request(message, "metadata.sim", "invalid_value")
    if state.expire_next_batches > 0:
        state.expire_next_batches -= 1
        return lines // 2
    return None


def _metadata(value: object) -> dict[str, str] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise invalid_request("Invalid 'metadata': expected an object.", "metadata", "invalid_type")
    if len(value) > _MAX_METADATA:
        message = f"Invalid 'metadata': at most {_MAX_METADATA} pairs."
        raise invalid_request(message, "metadata", "invalid_value")
    for key, item in value.items():
        if len(key) > 64 or not isinstance(item, str) or len(item) > 512:
            message = "Invalid 'metadata': keys are strings of up to 64 characters, values up to 512."
            raise invalid_request(message, "metadata", "invalid_value")
    return dict(value)


async def _json_object(receive: Receive) -> dict[str, Any]:
    try:
        value = json.loads(await read_body(receive, 1024 * 1024) or b"{}")
    except (ValueError, UnicodeDecodeError, BodyTooLargeError):
        raise invalid_request("We could not parse the JSON body of your request.") from None
    if not isinstance(value, dict):
        raise invalid_request("The request body must be a JSON object.")
    return value


def _jsonl(records: list[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(record, separators=(",", ":")) + "\n" for record in records).encode()
