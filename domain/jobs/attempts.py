"""The attempt log: one row per upstream attempt of a job, written by the worker that made it.

A row is written in the same transaction as the fenced write it belongs to (the retry that follows it,
or the job's final outcome), so a worker that lost its lease logs nothing, and each attempt number is
logged once (a unique key, inserted with ``ON CONFLICT DO NOTHING``).

Outcomes:

- ``succeeded``: the upstream answered 2xx.
- ``retrying``: the call failed in a way that can succeed later; the next attempt follows after
  ``wait_before_next_seconds``.
- ``failed``: the call failed and no attempt follows (a permanent error, the last attempt, or a
  cancel requested meanwhile).
- ``lost``: the worker stopped during the attempt (its lease expired), so the call's outcome is unknown.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, cast

from sqlalchemy import Table, select
from sqlalchemy.orm import Session

from domain.redaction import redact
from domain.storage.dialect import Dialect, dialect_of
from domain.storage.models import JobAttempt, utcnow
from domain.storage.sessions import Executor

MAX_ERROR_CHARS = 1000
"""The most characters of an attempt's error the log keeps (a job's attempts and a delivery's alike)."""


class AttemptOutcome(StrEnum):
    """How one attempt ended."""

    succeeded = "succeeded"
    retrying = "retrying"
    failed = "failed"
    lost = "lost"


@dataclass(frozen=True, slots=True)
class AttemptRecord:
    """What the log keeps of one attempt."""

    number: int
    outcome: AttemptOutcome
    started_at: datetime | None = None
    finished_at: datetime | None = None
    status_code: int | None = None
    error_type: str | None = None
    error: str | None = None
    wait_before_next_seconds: float | None = None


def record(session: Executor, job_id: str, attempt: AttemptRecord) -> None:
    """Log one attempt; a number already logged for this job is left as it is."""
    values = row_values(attempt)
    values["job_id"] = job_id
    session.execute(_insert_statement(dialect_of(session)), values)


def row_values(attempt: AttemptRecord) -> dict[str, Any]:
    """The log row's columns (but its job's id), as stored: the error redacted and cut, the wait rounded."""
    values = asdict(attempt)
    values["outcome"] = attempt.outcome.value
    values["finished_at"] = attempt.finished_at or utcnow()
    if attempt.error is not None:
        values["error"] = redact(attempt.error)[:MAX_ERROR_CHARS]
    if attempt.wait_before_next_seconds is not None:
        values["wait_before_next_seconds"] = round(attempt.wait_before_next_seconds, 3)
    return values


_INSERTS: dict[str, Any] = {}


def _insert_statement(dialect: Dialect) -> Any:
    """The INSERT … ON CONFLICT DO NOTHING of one log row, built once per dialect, on the table (Core):
    a job's every attempt runs it."""
    statement = _INSERTS.get(dialect.name)
    if statement is None:
        table = cast(Table, JobAttempt.__table__)
        statement = dialect.insert(table).on_conflict_do_nothing(index_elements=["job_id", "number"])
        _INSERTS[dialect.name] = statement
    return statement


def record_lost_if_missing(session: Executor, job_id: str, number: int) -> bool:
    """Log attempt ``number`` as lost unless it was logged; True when it was missing.

    Called when a job is claimed for attempt ``number + 1``: an earlier attempt that left no row ended
    with its worker (a crash, a kill, a lease that ran out).
    """
    if number < 1:
        return False
    logged = session.scalar(
        select(JobAttempt.id).where(JobAttempt.job_id == job_id, JobAttempt.number == number)
    )
    if logged is not None:
        return False
    record(
        session,
        job_id,
        AttemptRecord(
            number=number,
            outcome=AttemptOutcome.lost,
            error_type="worker_lost",
            error="the worker stopped during this attempt (its lease expired); the job was run again",
        ),
    )
    return True


def list_attempts(session: Session, job_id: str) -> list[JobAttempt]:
    """A job's attempts, first to last."""
    return list(
        session.scalars(select(JobAttempt).where(JobAttempt.job_id == job_id).order_by(JobAttempt.number))
    )
