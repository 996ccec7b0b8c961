"""`/v1/jobs`: submit, read, list and cancel jobs."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Query, Response, status

from api.deps import EnqueuerDep, SessionDep, SettingsDep, TenantDep
from api.presenters import job_out
from domain import repository
from domain.costing import estimate_cost
from domain.errors import UnknownModel
from domain.models import utcnow
from domain.repository import NewJob
from domain.schemas import ErrorBody, JobCreate, JobList, JobOut, validate_body
from domain.status import JobKind, JobStatus

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])

ERRORS: dict[int | str, dict[str, object]] = {
    code: {"model": ErrorBody} for code in (400, 404, 409, 413, 422, 503)
}


@router.post("", status_code=status.HTTP_202_ACCEPTED, response_model=JobOut, responses=ERRORS)
def submit_job(
    body: JobCreate,
    response: Response,
    session: SessionDep,
    settings: SettingsDep,
    enqueuer: EnqueuerDep,
    tenant: TenantDep,
    idempotency_key: Annotated[str | None, Header(max_length=255)] = None,
) -> JobOut:
    """Validate, store (durable before anything is sent), then send the id to the tier's queue."""
    model = validate_body(body.kind, body.request)
    tier = settings.tiers.tier_for(model)
    if tier is None:
        known = ", ".join(settings.tiers.known_models)
        raise UnknownModel(f"no tier serves model {model!r}; known models: {known}", param="request.model")
    cost = estimate_cost(body.kind.value, body.request, default_max_tokens=settings.default_max_tokens)
    new = NewJob(
        kind=body.kind.value,
        model=model,
        tier=tier.name,
        request=body.request,
        estimated_tokens=cost.tokens,
        priority=body.priority,
        metadata=body.metadata,
        webhook_url=body.webhook_url,
        tenant_id=tenant,
        idempotency_key=idempotency_key,
    )
    fingerprint = repository.request_hash(body.model_dump(mode="json")) if idempotency_key else None
    job, created = repository.create_job(session, new, request_fingerprint=fingerprint)
    if created:
        job.dispatched_at = utcnow()
    session.commit()
    if created and not enqueuer.send(job.id, tier.queue):
        repository.mark_dispatched(session, [job.id], None)
        session.commit()
    if not created:
        response.headers["idempotent-replayed"] = "true"
    return job_out(job)


@router.get("", response_model=JobList, responses=ERRORS)
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


@router.get("/{job_id}", response_model=JobOut, responses=ERRORS)
def get_job(job_id: str, session: SessionDep, tenant: TenantDep) -> JobOut:
    return job_out(repository.get_job(session, job_id, tenant_id=tenant))


@router.post("/{job_id}/cancel", response_model=JobOut, responses=ERRORS)
def cancel_job(job_id: str, session: SessionDep, tenant: TenantDep) -> JobOut:
    """A queued job is cancelled at once; a running one ends cancelled when its current call returns."""
    job = repository.cancel_job(session, job_id, tenant_id=tenant)
    session.commit()
    return job_out(job)
