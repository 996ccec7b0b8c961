"""The life of one batch on a clock: ``validating`` → ``in_progress`` → ``finalizing`` → ``completed``,
or ``failed`` (invalid input, enqueued-token limit), ``expired``, ``cancelling`` → ``cancelled``.

Nothing runs in the background: ``advance_batch(batch, now, hooks)`` moves a batch to where the clock says
it is, answering the lines that are due on the way. The durations are fixed when the batch is created:

- ``validating`` lasts ``validating`` seconds; then the input errors, or the enqueued-token limit, fail
  the batch (``failed_at``), else it goes ``in_progress``;
- ``in_progress`` lasts ``processing + line * lines`` seconds; the lines are answered evenly over that time
  (all at once when it is 0), in file order; then ``finalizing`` — or, for a batch told to expire,
  ``expired``: the lines not answered by then go to the error file as ``batch_expired``;
- ``finalizing`` lasts ``finalizing`` seconds; then ``completed`` with its output and error files;
- a cancel in ``validating`` or ``in_progress`` moves to ``cancelling`` at once (no more lines are answered);
  after ``cancelling`` seconds, ``cancelled``: the lines not answered go to the error file as
  ``batch_cancelled``.

A batch holds its admission tokens against the model's enqueued-token limit from ``in_progress_at`` until
it leaves ``in_progress``. ``request_counts``: ``total`` is the number of lines once validated,
``completed`` the lines answered 200, ``failed`` every line of the error file (expired and cancelled
lines included), so ``completed + failed == total`` once the batch is done.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

COMPLETION_WINDOW_SECONDS = 24 * 3600
ACTIVE_STATUSES = ("validating", "in_progress", "finalizing", "cancelling")
FINAL_STATUSES = ("completed", "failed", "expired", "cancelled")


@dataclass(frozen=True, slots=True)
class BatchTimings:
    """How long each phase of a batch lasts, in seconds."""

    validating: float = 0.5
    processing: float = 0.5
    line: float = 0.0
    finalizing: float = 0.5
    cancelling: float = 0.5

    def processing_for(self, lines: int) -> float:
        return self.processing + self.line * lines


@dataclass(slots=True)
class SimBatch:
    """One batch and everything produced for it so far."""

    id: str
    endpoint: str
    input_file_id: str
    completion_window: str
    metadata: dict[str, str] | None
    created_at: float
    timings: BatchTimings
    model: str | None = None
    planned: list[Any] = field(default_factory=list)
    input_errors: list[dict[str, Any]] = field(default_factory=list)
    expire_after: int | None = None
    status: str = "validating"
    entered: dict[str, float] = field(default_factory=dict)
    errors: list[dict[str, Any]] = field(default_factory=list)
    tokens: int = 0
    released_at: float | None = None
    answered: int = 0
    output: list[dict[str, Any]] = field(default_factory=list)
    error_lines: list[dict[str, Any]] = field(default_factory=list)
    completed: int = 0
    failed: int = 0
    line_count: int = 0
    validated: bool = False
    usage: dict[str, int] = field(
        default_factory=lambda: {"input": 0, "cached": 0, "output": 0, "reasoning": 0}
    )
    output_file_id: str | None = None
    error_file_id: str | None = None

    @property
    def total(self) -> int:
        return self.line_count if self.validated else 0

    def holds_tokens_at(self, moment: float) -> bool:
        """Whether the batch counts against its model's enqueued-token limit at ``moment``."""
        start = self.entered.get("in_progress")
        if start is None or moment < start:
            return False
        return self.released_at is None or moment < self.released_at


class BatchHooks(Protocol):
    """What the lifecycle asks of the simulator."""

    def limit_errors(self, batch: SimBatch, moment: float) -> list[dict[str, Any]]:
        """Errors that fail the batch when it is validated at ``moment`` (the enqueued-token limit)."""

    def answer(self, batch: SimBatch, index: int) -> tuple[dict[str, Any], bool]:
        """The output record of line ``index`` and whether it succeeded (the usage is the hook's)."""

    def not_run(self, batch: SimBatch, index: int, code: str) -> dict[str, Any]:
        """The error record of a line never run (``batch_expired`` or ``batch_cancelled``)."""

    def write_files(self, batch: SimBatch) -> None:
        """Store the output and error files of a batch that is done."""


def advance_batch(batch: SimBatch, now: float, hooks: BatchHooks) -> None:
    """Move ``batch`` through every phase that has ended by ``now``."""
    timings = batch.timings
    if batch.status == "validating":
        moment = batch.created_at + timings.validating
        if now < moment:
            return
        errors = batch.input_errors or hooks.limit_errors(batch, moment)
        if errors:
            batch.errors = errors
            _enter(batch, "failed", moment)
            return
        batch.validated = True
        batch.line_count = len(batch.planned)
        _enter(batch, "in_progress", moment)
    if batch.status == "in_progress":
        _process(batch, now, hooks)
    if batch.status == "finalizing":
        moment = batch.entered["finalizing"] + timings.finalizing
        if now < moment:
            return
        hooks.write_files(batch)
        _enter(batch, "completed", moment)
    if batch.status == "cancelling":
        moment = batch.entered["cancelling"] + timings.cancelling
        if now < moment:
            return
        _not_run_rest(batch, "batch_cancelled", hooks)
        hooks.write_files(batch)
        _enter(batch, "cancelled", moment)


def cancel_batch(batch: SimBatch, now: float, hooks: BatchHooks) -> bool:
    """Start cancelling at ``now``; False when the batch is past cancelling (finalizing or done)."""
    advance_batch(batch, now, hooks)
    if batch.status == "cancelling":
        return True
    if batch.status not in ("validating", "in_progress"):
        return False
    if batch.status == "validating":
        batch.validated = not batch.input_errors
        batch.line_count = len(batch.planned)
    batch.released_at = now
    _enter(batch, "cancelling", now)
    advance_batch(batch, now, hooks)
    return True


def _process(batch: SimBatch, now: float, hooks: BatchHooks) -> None:
    lines = len(batch.planned)
    start = batch.entered["in_progress"]
    span = batch.timings.processing_for(lines)
    end = start + span
    target = lines if batch.expire_after is None else min(batch.expire_after, lines)
    due = target if now >= end or span <= 0 else int(target * (now - start) / span)
    while batch.answered < due:
        record, succeeded = hooks.answer(batch, batch.answered)
        if succeeded:
            batch.output.append(record)
            batch.completed += 1
        else:
            batch.error_lines.append(record)
            batch.failed += 1
        batch.answered += 1
    if now < end:
        return
    batch.released_at = end
    if batch.expire_after is not None:
        _not_run_rest(batch, "batch_expired", hooks)
        hooks.write_files(batch)
        _enter(batch, "expired", end)
        return
    _enter(batch, "finalizing", end)


def _not_run_rest(batch: SimBatch, code: str, hooks: BatchHooks) -> None:
    if not batch.validated:
        return
    for index in range(batch.answered, len(batch.planned)):
        batch.error_lines.append(hooks.not_run(batch, index, code))
        batch.failed += 1
    batch.answered = len(batch.planned)


def _enter(batch: SimBatch, status: str, moment: float) -> None:
    batch.status = status
    batch.entered[status] = moment
    if status in FINAL_STATUSES:  # the files hold the lines now: let the plans and records go
        batch.planned = []
        batch.output = []
        batch.error_lines = []


def batch_object(batch: SimBatch) -> dict[str, Any]:
    """The batch as OpenAI's ``Batch`` object (every field present, unknown ones null)."""

    def at(status: str) -> int | None:
        moment = batch.entered.get(status)
        return int(moment) if moment is not None else None

    usage = batch.usage
    return {
        "id": batch.id,
        "object": "batch",
        "endpoint": batch.endpoint,
        "model": batch.model,
        "errors": {"object": "list", "data": batch.errors} if batch.errors else None,
        "input_file_id": batch.input_file_id,
        "completion_window": batch.completion_window,
        "status": batch.status,
        "output_file_id": batch.output_file_id,
        "error_file_id": batch.error_file_id,
        "created_at": int(batch.created_at),
        "in_progress_at": at("in_progress"),
        "expires_at": int(batch.created_at) + COMPLETION_WINDOW_SECONDS,
        "finalizing_at": at("finalizing"),
        "completed_at": at("completed"),
        "failed_at": at("failed"),
        "expired_at": at("expired"),
        "cancelling_at": at("cancelling"),
        "cancelled_at": at("cancelled"),
        "request_counts": {"total": batch.total, "completed": batch.completed, "failed": batch.failed},
        "usage": {
            "input_tokens": usage["input"],
            "input_tokens_details": {"cached_tokens": usage["cached"]},
            "output_tokens": usage["output"],
            "output_tokens_details": {"reasoning_tokens": usage["reasoning"]},
            "total_tokens": usage["input"] + usage["output"],
        },
        "metadata": batch.metadata,
    }
