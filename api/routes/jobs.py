"""`/v1/jobs`: submit, read, list and cancel jobs."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Header, Query, Request, Response, status
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from api.auth import require_scope
from api.deps import EnqueuerDep, JobCountersDep, KeyIdDep, SessionDep, SettingsDep, TenantDep
from api.enqueue import Enqueuer
from api.examples import JOB_EXAMPLES
from api.presenters import attempts_out, job_out
from api.spend import reserve_jobs
from api.webhook_hosts import webhook_check
from api.window_rooms import WindowRoomsDep
from config.settings import Settings
from domain.jobs import attempts, cancellation, repository
from domain.jobs.execution import ExecutionPath
from domain.jobs.schemas import ErrorBody, JobCreate, JobList, JobOut
from domain.jobs.submission import Submission, WebhookCheck, WindowRooms
from domain.metrics.job_counters import JobCounters
from domain.status import JobKind, JobStatus
from domain.storage.models import utcnow
from domain.tenancy.quotas import admit_submission
from domain.webhooks import events
from infra.celery_conf import task_label

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])

_ERRORS: dict[int | str, dict[str, object]] = {
    code: {"model": ErrorBody} for code in (400, 401, 403, 404, 409, 413, 414, 422, 429, 503)
}


@router.post(
    "",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=JobOut,
    responses=_ERRORS,
    dependencies=[require_scope("jobs:write")],
)
async def submit_job(
    body: Annotated[JobCreate, Body(openapi_examples=JOB_EXAMPLES)],
    request: Request,
    response: Response,
    session: SessionDep,
    settings: SettingsDep,
    enqueuer: EnqueuerDep,
    tenant: TenantDep,
    counters: JobCountersDep,
    rooms: WindowRoomsDep,
    key_id: KeyIdDep,
    idempotency_key: Annotated[str | None, Header(max_length=255)] = None,
) -> JobOut:
    """Validate, store (durable before anything is sent), then send the id to the tier's queue.

    The work runs in one hop to a worker thread, and the answer is built back on the event loop: a plain
    ``def`` route would cost a second hop, for FastAPI's check of the response model."""
    check = await webhook_check(request, [body.webhook_url])  # resolved here, not on the thread
    job, created = await run_in_threadpool(
        _submit, body, session, settings, enqueuer, tenant, counters, rooms, idempotency_key, check, key_id
    )
    if not created:
        response.headers["idempotent-replayed"] = "true"
    return job


def _submit(
    body: JobCreate,
    session: Session,
    settings: Settings,
    enqueuer: Enqueuer,
    tenant: str,
    counters: JobCounters,
    rooms: WindowRooms,
    idempotency_key: str | None,
    check: WebhookCheck,
    key_id: str | None = None,
) -> tuple[JobOut, bool]:
    submission = Submission(settings, tenant_id=tenant, check_webhook=check)
    new = submission.prepare(body, idempotency_key=idempotency_key)
    tier = settings.tiers.tiers[new.tier]
    fingerprint = repository.request_hash(body.model_dump(mode="json")) if idempotency_key else None
    # decided before the INSERT: no UPDATE after it; a deferred job waits for its provider batch
    fast = new.execution_path is ExecutionPath.live and rooms.take(session, settings, tier) > 0
    job, created = repository.create_job(
        session, new, request_fingerprint=fingerprint, dispatched_at=utcnow() if fast else None
    )
    if created:
        admit_submission(session, tenant_id=tenant, limit=settings.max_queued_jobs_per_tenant)
        reserve_jobs(session, settings, tenant_id=tenant, key_id=key_id, jobs=[(job.id, new)])
    fast_path = created and fast
    session.commit()
    if fast_path and not enqueuer.send(job.id, tier.queue, label=task_label(job.id, job.kind, job.model)):
        repository.mark_dispatched(session, [job.id], None)
        session.commit()
    if created:
        counters.submitted([job])
    return job_out(job), created


@router.get("", response_model=JobList, responses=_ERRORS, dependencies=[require_scope("jobs:read")])
def list_jobs(
    session: SessionDep,
    settings: SettingsDep,
    tenant: TenantDep,
    status_: Annotated[JobStatus | None, Query(alias="status")] = None,
    kind: JobKind | None = None,
    tier: Annotated[str | None, Query(max_length=64)] = None,
    after: Annotated[str | None, Query(max_length=64, description="the last id of the previous page")] = None,
    limit: Annotated[int | None, Query(ge=1, le=100)] = None,
) -> JobList:
    """Newest first, with cursor pagination: pass the previous page's ``last_id`` as ``after``."""
    jobs, has_more = repository.list_jobs(
        session,
        tenant_id=tenant,
        status=status_.value if status_ else None,
        kind=kind.value if kind else None,
        tier=tier,
        after=after,
        limit=limit or settings.default_page_size,
    )
    data = [job_out(job) for job in jobs]
    return JobList(
        data=data,
        first_id=data[0].id if data else None,
        last_id=data[-1].id if data else None,
        has_more=has_more,
    )


@router.get("/{job_id}", response_model=JobOut, responses=_ERRORS, dependencies=[require_scope("jobs:read")])
def get_job(job_id: str, session: SessionDep, tenant: TenantDep) -> JobOut:
    job = job_out(repository.get_job(session, job_id, tenant_id=tenant))
    job.attempts_log = attempts_out(attempts.list_attempts(session, job_id))
    return job


@router.post(
    "/{job_id}/cancel",
    response_model=JobOut,
    responses=_ERRORS,
    dependencies=[require_scope("jobs:write")],
)
def cancel_job(
    job_id: str,
    session: SessionDep,
    settings: SettingsDep,
    enqueuer: EnqueuerDep,
    tenant: TenantDep,
    counters: JobCountersDep,
) -> JobOut:
    """A queued job is cancelled at once; a running one ends cancelled when its current call returns."""
    job, ended_now = cancellation.cancel(session, job_id, tenant_id=tenant)
    # the event only when this request ended the job: a running job's worker records its own
    delivery_id = events.record_job_event(session, job.id, settings) if ended_now else None
    session.commit()
    counters.cancelled([job])
    if delivery_id is not None:
        enqueuer.send_webhook(delivery_id)
    return job_out(job)
