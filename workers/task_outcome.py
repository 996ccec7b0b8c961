"""How a job's end shows in Celery and so in Flower: a failed job's task ends in ``FAILURE``, and a
cancelled job's task in ``REVOKED``.

The job task stores the job's outcome first (the database is the ledger), then raises ``JobFailed`` with
the job's stored error type and message. The task declares it as an expected error (``throws``): Celery
records the failure without a traceback and never retries it, and the message is acknowledged as usual.
The stored message is the redacted one, so no secret reaches Flower.

A job cancelled before its task ran (the claim finds it cancelled) or while it ran: the task sends
Celery's own ``task-revoked`` event for itself, then raises Celery's ``Ignore``, which acknowledges the
message and sends no later event; Flower's state machine then shows the task ``REVOKED``. Revoking by
broadcast (``app.control.revoke``) is not used: it needs each message's task id at cancel time and a
fan-out to every worker, where the task already knows, from the ledger, that its job was cancelled.
"""

from __future__ import annotations

from sqlalchemy.orm import Session, sessionmaker

from domain.status import JobStatus
from domain.storage.models import Job
from domain.storage.sessions import session_scope

_MAX_MESSAGE = 500


class JobFailed(Exception):
    """A job failed; its outcome is stored. Raised so that its Celery task ends in FAILURE."""

    def __init__(self, job_id: str, kind: str, model: str, error_type: str, message: str) -> None:
        self.job_id, self.kind, self.model, self.error_type = job_id, kind, model, error_type
        text = message if len(message) <= _MAX_MESSAGE else message[:_MAX_MESSAGE] + "…"
        super().__init__(f"job {job_id} ({kind}, {model}) failed: {error_type}: {text}")


def was_cancelled(sessions: sessionmaker[Session], job_id: str) -> bool:
    """Whether ``job_id`` is stored as cancelled (read when a task's claim found nothing to run)."""
    with session_scope(sessions) as session:
        job = session.get(Job, job_id)
        return job is not None and job.status == JobStatus.cancelled.value


def failure_of(sessions: sessionmaker[Session], job_id: str) -> JobFailed:
    """The JobFailed for ``job_id``, from its stored error."""
    with session_scope(sessions) as session:
        job = session.get(Job, job_id)
        if job is None:
            return JobFailed(job_id, "?", "?", "unknown", "the job is gone")
        return JobFailed(
            job_id, str(job.kind), str(job.model), job.error_type or "error", job.error_message or ""
        )
