"""`/v1/jobs/{id}/webhook-deliveries`: a job's webhook delivery log, and redelivery of an event.

Every route checks first that ``{id}`` is one of the caller's jobs (404 otherwise), so the ``jobs:*``
scopes reach jobs' deliveries only, never a batch's that shares the table."""

from __future__ import annotations

from fastapi import APIRouter, status

from api.auth import require_scope
from api.deps import EnqueuerDep, SessionDep, TenantDep
from domain.jobs import repository
from domain.jobs.schemas import ErrorBody
from domain.webhooks import repository as deliveries
from domain.webhooks.schemas import WebhookDeliveryList, WebhookDeliveryOut, delivery_out

router = APIRouter(prefix="/v1/jobs/{job_id}/webhook-deliveries", tags=["webhooks"])

_ERRORS: dict[int | str, dict[str, object]] = {
    code: {"model": ErrorBody} for code in (401, 403, 404, 409, 414, 503)
}


@router.get(
    "", response_model=WebhookDeliveryList, responses=_ERRORS, dependencies=[require_scope("jobs:read")]
)
def list_deliveries(job_id: str, session: SessionDep, tenant: TenantDep) -> WebhookDeliveryList:
    """Every webhook delivery of the job (one per event), each with its attempts."""
    repository.get_job(session, job_id, tenant_id=tenant)
    found = deliveries.list_deliveries(session, tenant_id=tenant, subject_id=job_id)
    attempts = deliveries.attempts_by_delivery(session, [delivery.id for delivery in found])
    return WebhookDeliveryList(data=[delivery_out(d, attempts.get(d.id, [])) for d in found])


@router.get(
    "/{delivery_id}",
    response_model=WebhookDeliveryOut,
    responses=_ERRORS,
    dependencies=[require_scope("jobs:read")],
)
def get_delivery(job_id: str, delivery_id: str, session: SessionDep, tenant: TenantDep) -> WebhookDeliveryOut:
    repository.get_job(session, job_id, tenant_id=tenant)  # jobs:read reads jobs' deliveries, no one else's
    delivery = deliveries.get_delivery(session, tenant_id=tenant, subject_id=job_id, delivery_id=delivery_id)
    attempts = deliveries.attempts_by_delivery(session, [delivery.id])
    return delivery_out(delivery, attempts.get(delivery.id, []))


@router.post(
    "/{delivery_id}/redeliver",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=WebhookDeliveryOut,
    responses=_ERRORS,
    dependencies=[require_scope("jobs:write")],
)
def redeliver(
    job_id: str, delivery_id: str, session: SessionDep, enqueuer: EnqueuerDep, tenant: TenantDep
) -> WebhookDeliveryOut:
    """Send the same event again now (same ``webhook-id``, same body), with a fresh retry schedule.
    409 while an attempt is in flight."""
    repository.get_job(session, job_id, tenant_id=tenant)  # jobs:write redelivers jobs' events only
    delivery = deliveries.redeliver(session, tenant_id=tenant, subject_id=job_id, delivery_id=delivery_id)
    session.commit()
    if not enqueuer.send_webhook(delivery.id):
        deliveries.mark_dispatched(session, [delivery.id], None)
        session.commit()
    attempts = deliveries.attempts_by_delivery(session, [delivery.id])
    return delivery_out(delivery, attempts.get(delivery.id, []))
