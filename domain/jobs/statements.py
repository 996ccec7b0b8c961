"""The worker's statements on jobs, built once as Core statements on the table (no ORM
synchronisation), with one round trip each: the claim reads what the run needs in its RETURNING, and
the completion feeds the attempt log in the same statement where the database can
(``COMPLETE_AND_LOG``). ``domain.jobs.repository`` runs them; so does ``domain.storage.direct`` on the
worker's hot path.
"""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy import Table, and_, bindparam, case, or_, select, update

from domain.jobs.execution import ExecutionPath
from domain.leases import lease
from domain.leases.tables import JOB_LEASES
from domain.status import JobStatus
from domain.storage.dialect import POSTGRESQL
from domain.storage.models import Job, JobAttempt

_JOBS = cast(Table, Job.__table__)
CLAIM = (
    update(_JOBS)
    .where(
        _JOBS.c.id == bindparam("claim_id"),
        or_(
            _JOBS.c.status == JobStatus.queued.value,
            and_(
                _JOBS.c.status == JobStatus.running.value,
                or_(
                    lease.is_expired(JOB_LEASES, bindparam("claim_now")),
                    # the same claim again: its answer was lost on the way (a connection cut), and the
                    # retry with the same token takes the lease it already holds, counting no attempt
                    lease.held_by(JOB_LEASES, bindparam("claim_token")),
                ),
            ),
        ),
        _JOBS.c.cancel_requested_at.is_(None),
    )
    .values(
        status=JobStatus.running.value,
        **lease.taken(JOB_LEASES, bindparam("claim_until"), bindparam("claim_token")),
        attempts=case(
            (lease.held_by(JOB_LEASES, bindparam("claim_token")), _JOBS.c.attempts),
            else_=_JOBS.c.attempts + 1,
        ),
        started_at=bindparam("claim_now"),
        updated_at=bindparam("claim_now"),
        execution_path=ExecutionPath.live.value,  # a job that fell back from a provider batch runs live
    )
    .returning(
        _JOBS.c.attempts,
        _JOBS.c.kind,
        _JOBS.c.model,
        _JOBS.c.tier,
        _JOBS.c.request,
        _JOBS.c.estimated_tokens,
        _JOBS.c.webhook_url,
        _JOBS.c.batch_id,
    )
)
COMPLETE = (
    update(_JOBS)
    .where(
        _JOBS.c.id == bindparam("fence_id"),
        lease.held_by(JOB_LEASES, bindparam("fence_token")),
        _JOBS.c.status == JobStatus.running.value,
    )
    .values(
        # a cancel requested meanwhile wins, decided under the row's lock
        status=case(
            (_JOBS.c.cancel_requested_at.is_(None), JobStatus.succeeded.value),
            else_=JobStatus.cancelled.value,
        ),
        result=bindparam("done_result"),
        usage=bindparam("done_usage"),
        prompt_tokens=bindparam("done_prompt_tokens"),
        completion_tokens=bindparam("done_completion_tokens"),
        total_tokens=bindparam("done_total_tokens"),
        cached_tokens=bindparam("done_cached_tokens"),
        reasoning_tokens=bindparam("done_reasoning_tokens"),
        images=bindparam("done_images"),
        limiter_wait_ms=_JOBS.c.limiter_wait_ms + bindparam("done_wait_ms"),
        **lease.released(JOB_LEASES),
        finished_at=bindparam("done_at"),
        updated_at=bindparam("done_at"),
    )
    .returning(_JOBS.c.status)
)


_ATTEMPTS = cast(Table, JobAttempt.__table__)
_LOGGED_COLUMNS = (
    "number",
    "started_at",
    "finished_at",
    "outcome",
    "status_code",
    "error_type",
    "error",
    "wait_before_next_seconds",
)


def _complete_and_log() -> Any:
    """The completion feeding the attempt-log INSERT in one statement (a data-modifying CTE): the row is
    logged exactly when the fenced write landed. Answers the status stored, or no row."""
    done = COMPLETE.returning(_JOBS.c.id).cte("done")
    row = select(
        done.c.id,
        *(bindparam(f"log_{name}", type_=_ATTEMPTS.c[name].type) for name in _LOGGED_COLUMNS),
    )
    logged = (
        POSTGRESQL.insert(_ATTEMPTS)
        .from_select(["job_id", *_LOGGED_COLUMNS], row)
        .on_conflict_do_nothing(index_elements=["job_id", "number"])
        .cte("logged")
    )
    return select(done.c.status).add_cte(logged)


COMPLETE_AND_LOG = _complete_and_log()
