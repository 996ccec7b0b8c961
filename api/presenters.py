"""Turning stored rows into the API's response models (the job's view lives in ``domain.jobs.views``, since
webhook events carry it too)."""

from __future__ import annotations

from collections.abc import Iterable

from domain.jobs.schemas import AttemptOut
from domain.jobs.views import job_out
from domain.storage.models import JobAttempt

__all__ = ["attempts_out", "job_out"]


def attempts_out(rows: Iterable[JobAttempt]) -> list[AttemptOut]:
    """A job's attempt log as ``GET /v1/jobs/{id}`` shows it."""
    return [
        AttemptOut(
            number=row.number,
            outcome=row.outcome,  # type: ignore[arg-type]
            started_at=row.started_at,
            finished_at=row.finished_at,
            status_code=row.status_code,
            error_type=row.error_type,
            error=row.error,
            wait_before_next_seconds=row.wait_before_next_seconds,
        )
        for row in rows
    ]
