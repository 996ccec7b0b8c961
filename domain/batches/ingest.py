"""Turning a batch's input file into jobs: every line is checked, then valid files fan out.

The file is read chunk by chunk (``iter_lines``) and each line is checked (``LineChecker``) in the
order OpenAI checks them: JSON, ``custom_id`` present and unique, ``method`` POST, ``url`` equal to the
batch's endpoint, a ``body`` valid for its kind, and a model some tier serves. A problem becomes an
``errors.data[]`` entry ``{code, message, param, line}``; up to ``MAX_REPORTED_ERRORS`` are kept.

``ingest`` inserts the jobs of a valid file in chunks of ``INSERT_CHUNK`` rows, all in one transaction
with the batch's move to ``in_progress``, so a batch is never half fanned out: on the first bad line
the inserts stop, the transaction is rolled back and the batch ends ``failed``. Memory holds one
chunk of rows and the set of ``custom_id`` values, whatever the size of the file. The jobs join the
database backlog; the dispatcher (``workers.dispatcher``) sends them to the tier queues.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, insert
from sqlalchemy.orm import Session

from config.settings import Settings
from config.tiers import TierConfig
from domain.batches import file_repository
from domain.batches import repository as batch_repository
from domain.batches.schemas import Endpoint, job_kind_for
from domain.errors import InvalidRequest, NotFound, TooManyRequests
from domain.ids import new_ids
from domain.jobs.execution import ExecutionMode, ExecutionPath, batch_endpoint, path_columns
from domain.jobs.input_limits import InputLimits, check_request
from domain.jobs.json_safety import check_json, printable, text_problem
from domain.jobs.schemas import validate_body, with_model
from domain.jobs.streaming import refuse_streaming
from domain.jobs.token_bounds import check_context_window, check_output_tokens, stored_estimate
from domain.leases import lease
from domain.leases.tables import JOB_LEASES
from domain.status import JobKind, JobStatus
from domain.storage.models import Batch, Job
from domain.tenancy.quotas import ensure_queue_room
from domain.tokens.estimates import estimate_cost

MAX_REPORTED_ERRORS = 1000
MAX_CUSTOM_ID_LENGTH = 512
INSERT_CHUNK = 1000
BATCH_JOB_PRIORITY = -10
"""Batch jobs rank below interactive ones (priority 0) wherever jobs are picked by priority."""


@dataclass(frozen=True, slots=True)
class LineError:
    """One problem in the input file, as an ``errors.data[]`` entry."""

    code: str
    message: str
    param: str | None = None
    line: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class RequestLine:
    """A valid line, ready to become a job."""

    line: int
    custom_id: str
    kind: JobKind
    model: str
    tier: str
    queue: str
    body: dict[str, Any]
    estimated_tokens: int


def iter_lines(chunks: Iterable[bytes]) -> Iterator[tuple[int, bytes]]:
    """``(line number, bytes)`` of every non-blank line, numbered from 1 as in the file."""
    number = 0
    pending: list[bytes] = []
    for chunk in chunks:
        start = 0
        while (end := chunk.find(b"\n", start)) >= 0:
            number += 1
            line = b"".join([*pending, chunk[start:end]]) if pending else chunk[start:end]
            pending.clear()
            if line.strip():
                yield number, line
            start = end + 1
        if start < len(chunk):
            pending.append(chunk[start:])
    tail = b"".join(pending)
    if tail.strip():
        yield number + 1, tail


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


class LineChecker:
    """Checks lines one at a time for one batch; remembers the custom_ids already seen."""

    def __init__(
        self, endpoint: Endpoint, tiers: TierConfig, limits: InputLimits, *, default_max_tokens: int
    ) -> None:
        self.endpoint = endpoint
        self.tiers = tiers
        self.limits = limits
        self.default_max_tokens = default_max_tokens
        self.seen: set[str] = set()

    def check(self, number: int, raw: bytes) -> RequestLine | LineError:
        try:
            item = json.loads(raw, parse_constant=_reject_constant)
        except (ValueError, RecursionError):
            return LineError("invalid_json_line", "This line is not parseable as valid JSON.", None, number)
        if not isinstance(item, dict):
            return LineError("invalid_json_line", "This line is not a JSON object.", None, number)
        problem = self._envelope(item, number)
        if problem is not None:
            return problem
        custom_id: str = item["custom_id"]
        body: dict[str, Any] = item["body"]
        kind = job_kind_for(self.endpoint, body)
        try:
            check_json(body, param="body")
            refuse_streaming(body, "batch", prefix="body")  # an output file holds whole answers
            model = validate_body(kind, body)
            body = with_model(body, model)
            check_request(self.limits, body, param="body")
            limits = self.tiers.limits_for(model)
            check_output_tokens(body, model, limits, param="body")
            check_context_window(kind.value, body, model, limits, param="body")
        except InvalidRequest as exc:
            code = "invalid_body" if exc.code == InvalidRequest.code else exc.code
            return LineError(code, _body_param(exc.message) or code, _body_param(exc.param), number)
        tier = self.tiers.tier_for(model)
        if tier is None:
            known = ", ".join(self.tiers.known_models)
            message = f"The provided model '{model}' is not served by this batchery; known models: {known}."
            return LineError("model_not_found", message, "body.model", number)
        self.seen.add(custom_id)
        cost = estimate_cost(kind.value, body, default_max_tokens=self.default_max_tokens)
        tokens = stored_estimate(cost.tokens)
        return RequestLine(number, custom_id, kind, model, tier.name, tier.queue, body, tokens)

    def _envelope(self, item: dict[str, Any], number: int) -> LineError | None:
        for name in ("custom_id", "method", "url", "body"):
            if item.get(name) is None:
                return LineError(
                    "missing_required_parameter", f"Missing required parameter: '{name}'.", name, number
                )
        custom_id = item["custom_id"]
        if not isinstance(custom_id, str) or not custom_id or len(custom_id) > MAX_CUSTOM_ID_LENGTH:
            message = f"custom_id must be a non-empty string of at most {MAX_CUSTOM_ID_LENGTH} characters."
            return LineError("invalid_custom_id", message, "custom_id", number)
        problem = text_problem(custom_id)
        if problem is not None:
            return LineError("invalid_custom_id", f"custom_id {problem}.", "custom_id", number)
        if custom_id in self.seen:
            message = (
                "The custom_id for this request is a duplicate of another request. "
                "The custom_id parameter must be unique for each request in a batch."
            )
            return LineError("duplicate_custom_id", message, "custom_id", number)
        if item["method"] != "POST":
            return LineError("invalid_method", "The method must be POST.", "method", number)
        if item["url"] != self.endpoint.value:
            given = printable(str(item["url"]))
            message = f"The url '{given}' does not match the batch endpoint '{self.endpoint.value}'."
            return LineError("url_mismatch", message, "url", number)
        if not isinstance(item["body"], dict):
            return LineError("invalid_body", "The body must be a JSON object.", "body", number)
        return None


def _body_param(text: str | None) -> str | None:
    """``request.x`` (the /v1/jobs naming) becomes ``body.x`` (the batch line's naming)."""
    if text is None:
        return None
    return text.replace("request.", "body.").replace("request:", "body:")


@dataclass
class IngestOutcome:
    """What ingestion did: the batch's status afterwards, its number of requests, or its errors."""

    status: str
    total: int = 0
    errors: list[LineError] = field(default_factory=list)


def ingest(session: Session, batch: Batch, settings: Settings, *, now: datetime) -> IngestOutcome:
    """Check the batch's input file and fan it out into queued jobs, or fail the batch.

    The jobs join the backlog (queued, never sent): the dispatcher sends their ids to the tier
    queues as the windows have room, fairly across tenants and batches. The caller commits. On
    ``failed`` the job inserts were rolled back and the batch carries its errors; ``skipped`` means
    the batch left ``validating`` meanwhile (cancelled) and nothing was written.
    """
    try:
        stored = file_repository.get_file(session, batch.input_file_id, tenant_id=batch.tenant_id)
    except NotFound:
        error = LineError(
            "file_not_found", f"The input file {batch.input_file_id} no longer exists.", "input_file_id"
        )
        return _fail(session, batch, [error], now)
    checker = LineChecker(
        Endpoint(batch.endpoint),
        settings.tiers,
        InputLimits.from_settings(settings),
        default_max_tokens=settings.default_max_tokens,
    )
    outcome = IngestOutcome(status="in_progress")
    pending: list[RequestLine] = []
    models: set[str] = set()
    for number, raw in iter_lines(file_repository.iter_chunks(session, stored.id)):
        checked = checker.check(number, raw)
        if isinstance(checked, LineError):
            outcome.errors.append(checked)
            if len(outcome.errors) >= MAX_REPORTED_ERRORS:
                break
            continue
        outcome.total += 1
        if outcome.total > settings.batch_max_requests:
            message = (
                f"The batch input file has more than the maximum of {settings.batch_max_requests} requests."
            )
            outcome.errors.append(LineError("too_many_tasks", message, None, number))
            break
        if outcome.errors:
            continue  # the batch will fail: keep checking, stop writing
        models.add(checked.model)
        pending.append(checked)
        if len(pending) >= INSERT_CHUNK:
            _insert_jobs(session, batch, pending, now, settings)
            pending.clear()
    if outcome.total == 0 and not outcome.errors:
        outcome.errors.append(LineError("empty_file", "The batch input file is empty.", None, None))
    if outcome.errors:
        session.rollback()
        return _fail(session, batch, outcome.errors, now)
    if pending:
        _insert_jobs(session, batch, pending, now, settings)
    try:
        ensure_queue_room(session, tenant_id=batch.tenant_id, limit=settings.max_queued_jobs_per_tenant)
    except TooManyRequests as exc:
        session.rollback()
        return _fail(session, batch, [LineError(exc.code, exc.message, None, None)], now)
    model = next(iter(models)) if len(models) == 1 else None
    if not batch_repository.start(session, batch.id, total=outcome.total, model=model, now=now):
        session.rollback()
        return IngestOutcome(status="skipped")
    return outcome


def _insert_jobs(
    session: Session, batch: Batch, lines: list[RequestLine], now: datetime, settings: Settings
) -> None:
    """One Core executemany (pipelined by psycopg): about twice as fast as the ORM's bulk insert. Each
    row has the same keys: the columns of its execution path (``domain.jobs.execution``) on top."""
    ids = new_ids("job", len(lines))
    rows = []
    for line, job_id in zip(lines, ids, strict=True):
        row = _job_row(batch, line, job_id, now)
        path = _line_path(batch, line, settings)
        rows.append({**row, **_DEFERRED_KEYS, **path_columns(path, batch.expires_at)})
    session.execute(insert(cast(Table, Job.__table__)), rows)


_DEFERRED_KEYS = {**lease.released(JOB_LEASES), "dispatched_at": None}


def _line_path(batch: Batch, line: RequestLine, settings: Settings) -> ExecutionPath:
    """The batch's mode for one line: a line whose provider has no Batch API for it runs live."""
    mode = ExecutionMode(batch.execution or ExecutionMode.live.value)
    if mode is ExecutionMode.live:
        return ExecutionPath.live
    provider = settings.providers[settings.tiers.tiers[line.tier].provider]
    serves = provider.serves_batch(batch_endpoint(line.kind.value))
    return ExecutionPath.provider_batch if serves else ExecutionPath.live


def _job_row(batch: Batch, line: RequestLine, job_id: str, now: datetime) -> dict[str, Any]:
    """A queued job in the backlog (``dispatched_at`` NULL): the dispatcher sends it."""
    return {
        "id": job_id,
        "tenant_id": batch.tenant_id,
        "kind": line.kind.value,
        "model": line.model,
        "tier": line.tier,
        "status": JobStatus.queued.value,
        "priority": BATCH_JOB_PRIORITY,
        "request": line.body,
        "estimated_tokens": line.estimated_tokens,
        "created_at": now,
        "updated_at": now,
        "batch_id": batch.id,
        "custom_id": line.custom_id,
    }


def _fail(session: Session, batch: Batch, errors: list[LineError], now: datetime) -> IngestOutcome:
    if batch_repository.fail(session, batch.id, [error.as_dict() for error in errors], now=now):
        return IngestOutcome(status="failed", errors=errors)
    return IngestOutcome(status="skipped")
