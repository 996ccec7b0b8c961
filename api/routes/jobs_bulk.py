"""``POST /v1/jobs/bulk``: up to 1,000 jobs in one request, each checked and answered on its own.

Every item goes through the same checks as ``POST /v1/jobs`` (``domain.jobs.submission``). The valid ones
are stored together in one multi-row INSERT, in one transaction, after the tenant's queue cap is
checked for all of them at once (over it, the whole request answers 429 ``tenant_queue_full`` and
nothing is stored), and after the sum of their estimates is reserved against the caller's spend
budgets, if any (over one, 429 ``budget_exceeded`` and nothing is stored: ``api.spend``). Each
tier's first jobs take the free places in its window and are sent at once over one broker
connection; the rest wait in the backlog, which the dispatcher drains fairly.

The answer is 202 with one result per item, in order: ``{"index", "id", "status": "queued"}`` or
``{"index", "id": null, "status": "rejected", "error": {"code", "message", "param", "type"}}``.
"""

from __future__ import annotations

from collections import Counter

from fastapi import APIRouter, Request, status
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from api.auth import require_scope
from api.deps import EnqueuerDep, JobCountersDep, KeyIdDep, SessionDep, SettingsDep, TenantDep
from api.enqueue import Enqueuer
from api.spend import reserve_jobs
from api.webhook_hosts import webhook_check
from api.window_rooms import WindowRoomsDep
from config.settings import Settings
from domain.jobs import bulk as bulk_jobs
from domain.jobs import repository
from domain.jobs.bulk import StoredJob
from domain.jobs.bulk_schemas import BulkItemError, BulkItemResult, BulkJobsCreate, BulkJobsOut
from domain.jobs.repository import NewJob
from domain.jobs.schemas import ErrorBody
from domain.jobs.submission import ItemError, Submission, WebhookCheck, WindowRooms
from domain.metrics.job_counters import JobCounters
from domain.storage.models import utcnow
from domain.tenancy.quotas import ensure_queue_room
from infra.celery_conf import task_label

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])

_ERRORS: dict[int | str, dict[str, object]] = {
    code: {"model": ErrorBody} for code in (400, 401, 403, 413, 414, 422, 429, 503)
}


@router.post(
    "/bulk",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=BulkJobsOut,
    responses=_ERRORS,
    dependencies=[require_scope("jobs:write")],
)
async def submit_jobs_bulk(
    body: BulkJobsCreate,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    enqueuer: EnqueuerDep,
    tenant: TenantDep,
    counters: JobCountersDep,
    rooms: WindowRoomsDep,
    key_id: KeyIdDep,
) -> BulkJobsOut:
    """Check every item; store the valid ones (durable before anything is sent) and answer per item.
    Webhook hosts are resolved first, on the event loop; the rest runs in one hop to a worker thread."""
    urls = [item.get("webhook_url") for item in body.jobs if isinstance(item, dict)]
    check = await webhook_check(request, urls)
    return await run_in_threadpool(
        _submit_all, body, session, settings, enqueuer, tenant, counters, rooms, check, key_id
    )


def _submit_all(
    body: BulkJobsCreate,
    session: Session,
    settings: Settings,
    enqueuer: Enqueuer,
    tenant: str,
    counters: JobCounters,
    rooms: WindowRooms,
    check: WebhookCheck,
    key_id: str | None = None,
) -> BulkJobsOut:
    submission = Submission(settings, tenant_id=tenant, check_webhook=check)
    prepared = [submission.prepare_item(index, raw) for index, raw in enumerate(body.jobs)]
    valid = [item for item in prepared if isinstance(item, NewJob)]
    stored = _store(session, settings, enqueuer, rooms, tenant, valid, key_id) if valid else []
    if stored:
        counters.submitted(stored)
    return _answer(prepared, stored)


def _store(
    session: Session,
    settings: Settings,
    enqueuer: Enqueuer,
    rooms: WindowRooms,
    tenant: str,
    jobs: list[NewJob],
    key_id: str | None = None,
) -> list[StoredJob]:
    ensure_queue_room(session, tenant_id=tenant, limit=settings.max_queued_jobs_per_tenant, adding=len(jobs))
    tiers = settings.tiers.tiers
    wanted = Counter(job.tier for job in jobs)
    room = {name: rooms.take(session, settings, tiers[name], count) for name, count in wanted.items()}
    send_now = bulk_jobs.fast_path_quota(jobs, room)
    stored = bulk_jobs.insert_jobs(session, jobs, send_now=send_now, now=utcnow())
    held = [(job.id, new) for job, new in zip(stored, jobs, strict=True)]
    reserve_jobs(session, settings, tenant_id=tenant, key_id=key_id, jobs=held)  # all or none
    session.commit()
    now = [job for job in stored if job.send_now]
    labels = {job.id: task_label(job.id, job.kind, job.model) for job in now}
    unsent = enqueuer.send_many([(job.id, tiers[job.tier].queue) for job in now], labels)
    if unsent:
        repository.mark_dispatched(session, unsent, None)
        session.commit()
    return stored


def _answer(prepared: list[NewJob | ItemError], stored: list[StoredJob]) -> BulkJobsOut:
    jobs = iter(stored)
    data: list[BulkItemResult] = []
    for index, item in enumerate(prepared):
        if isinstance(item, ItemError):
            error = BulkItemError(code=item.code, message=item.message, param=item.param)
            data.append(BulkItemResult(index=index, id=None, status="rejected", error=error))
        else:
            job = next(jobs)
            data.append(BulkItemResult(index=index, id=job.id, status="queued", tier=job.tier))
    accepted = len(stored)
    return BulkJobsOut(data=data, accepted=accepted, rejected=len(prepared) - accepted)
