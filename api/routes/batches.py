"""`/v1/batches`: OpenAI-compatible create, retrieve, list and cancel.

Create stores a ``validating`` batch and sends ``batchery.ingest_batch`` to the control queue: a worker
checks every line of the input file and fans it out into jobs. If the broker is down, the periodic
batch tick sends it later. The Batch objects returned carry live ``request_counts`` and ``usage``
while the batch runs.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from api.auth import require_scope
from api.deps import EnqueuerDep, KeyIdDep, SessionDep, SettingsDep, TenantDep
from api.enqueue import Enqueuer
from api.spend import has_budget, reserve_batch
from api.webhook_hosts import webhook_check
from config.prices import load_prices
from config.settings import Settings
from domain.batches import repository as batch_repository
from domain.batches.estimate import batch_charges
from domain.batches.schemas import BatchCreate, BatchList, BatchOut
from domain.batches.views import batch_out, needs_live_tally
from domain.errors import InvalidRequest
from domain.jobs.input_limits import InputLimits, check_job
from domain.jobs.json_safety import text_problem
from domain.jobs.schemas import ErrorBody
from domain.jobs.submission import WebhookCheck
from domain.storage.models import Batch, utcnow
from infra.celery_conf import FINALIZE_BATCH_TASK, INGEST_BATCH_TASK

router = APIRouter(prefix="/v1/batches", tags=["batches"])

_ERRORS: dict[int | str, dict[str, object]] = {
    code: {"model": ErrorBody} for code in (400, 401, 403, 404, 409, 422, 429, 503)
}


def _present(session: Session, batch: Batch) -> BatchOut:
    live = batch_repository.tally(session, batch.id) if needs_live_tally(batch) else None
    return batch_out(batch, live)


@router.post("", response_model=BatchOut, responses=_ERRORS, dependencies=[require_scope("batches:write")])
async def create_batch(
    body: BatchCreate,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    enqueuer: EnqueuerDep,
    tenant: TenantDep,
    key_id: KeyIdDep,
) -> BatchOut:
    """Create a batch from an uploaded ``purpose=batch`` file; it starts ``validating``. Under a budget,
    the whole file's estimate is reserved first: over it, the answer is 429 ``budget_exceeded`` and
    nothing is stored."""
    problem = text_problem(body.input_file_id)
    if problem is not None:
        raise InvalidRequest(f"input_file_id: {problem}", param="input_file_id")
    check_job(InputLimits.from_settings(settings), {}, metadata=body.metadata, webhook_url=body.webhook_url)
    check = await webhook_check(request, [body.webhook_url])  # resolved here, not on a thread
    return await run_in_threadpool(_create_batch, body, session, settings, enqueuer, tenant, check, key_id)


def _create_batch(
    body: BatchCreate,
    session: Session,
    settings: Settings,
    enqueuer: Enqueuer,
    tenant: str,
    check: WebhookCheck,
    key_id: str | None = None,
) -> BatchOut:
    if body.webhook_url is not None:
        check(body.webhook_url, settings)
    now = utcnow()
    batch = batch_repository.create(session, body, tenant_id=tenant, now=now)
    if has_budget(session, tenant_id=tenant):
        prices = load_prices(settings.prices_file)
        charges = batch_charges(
            session,
            settings,
            prices,
            tenant_id=tenant,
            input_file_id=batch.input_file_id,
            endpoint=body.endpoint,
            day=now.date(),
        )
        reserve_batch(session, tenant_id=tenant, key_id=key_id, batch_id=batch.id, charges=charges)
    session.commit()
    enqueuer.send_control(INGEST_BATCH_TASK, batch.id)
    return batch_out(batch)


@router.get("", response_model=BatchList, responses=_ERRORS, dependencies=[require_scope("batches:read")])
def list_batches(
    session: SessionDep,
    tenant: TenantDep,
    after: Annotated[str | None, Query(max_length=64, description="the last id of the previous page")] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> BatchList:
    """Newest first, with cursor pagination: pass the previous page's ``last_id`` as ``after``."""
    rows, has_more = batch_repository.list_page(session, tenant_id=tenant, after=after, limit=limit)
    data = [_present(session, batch) for batch in rows]
    return BatchList(
        data=data,
        first_id=data[0].id if data else None,
        last_id=data[-1].id if data else None,
        has_more=has_more,
    )


READ = [require_scope("batches:read")]
WRITE = [require_scope("batches:write")]


@router.get("/{batch_id}", response_model=BatchOut, responses=_ERRORS, dependencies=READ)
def get_batch(batch_id: str, session: SessionDep, tenant: TenantDep) -> BatchOut:
    return _present(session, batch_repository.get(session, batch_id, tenant_id=tenant))


@router.post("/{batch_id}/cancel", response_model=BatchOut, responses=_ERRORS, dependencies=WRITE)
def cancel_batch(batch_id: str, session: SessionDep, enqueuer: EnqueuerDep, tenant: TenantDep) -> BatchOut:
    """Queued jobs are cancelled at once and running ones when their call returns; the batch then ends
    ``cancelled`` with the results finished so far in its output file."""
    batch = batch_repository.get(session, batch_id, tenant_id=tenant)
    batch = batch_repository.cancel(session, batch, now=utcnow())
    session.commit()
    enqueuer.send_control(FINALIZE_BATCH_TASK, batch.id)
    return _present(session, batch)
