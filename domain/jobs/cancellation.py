"""Cancelling a job so that its ``job.cancelled`` event is recorded once, however many cancels race.

``cancel(session, job_id, tenant_id=...)`` answers ``(job, ended_now)``:

- a queued job ends ``cancelled`` by one conditional write, ``UPDATE … WHERE status = 'queued'
  RETURNING id``: of several cancels racing, exactly one sees a row come back, and only that one has
  ``ended_now`` and records the event (in the same transaction);
- a running job only gets ``cancel_requested_at`` (``UPDATE … WHERE status = 'running'``); its worker
  ends it after the current call and records the event itself, so the API records nothing;
- a job that is finished (or finishes while the cancel runs) answers 409, and records nothing: a
  cancel racing a completion never records a second terminal event.
"""

from __future__ import annotations

from sqlalchemy import update
from sqlalchemy.orm import Session

from domain.errors import Conflict
from domain.jobs.repository import get_job
from domain.status import JobStatus
from domain.storage.models import Job, utcnow


def cancel(session: Session, job_id: str, *, tenant_id: str) -> tuple[Job, bool]:
    """Cancel ``job_id`` (see the module docstring); raises NotFound or Conflict."""
    job = get_job(session, job_id, tenant_id=tenant_id)
    now = utcnow()
    ended = session.execute(
        update(Job)
        .where(Job.id == job.id, Job.status == JobStatus.queued.value)
        .values(status=JobStatus.cancelled.value, finished_at=now, cancel_requested_at=now)
        .returning(Job.id)
    ).first()
    if ended is not None:
        session.refresh(job)
        return job, True
    requested = session.execute(
        update(Job)
        .where(Job.id == job.id, Job.status == JobStatus.running.value)
        .values(cancel_requested_at=now)
        .returning(Job.id)
    ).first()
    session.refresh(job)
    if requested is not None:
        return job, False
    raise Conflict(f"job {job.id} is {job.status} and cannot be cancelled", param="id")
