"""``/v1/admin/budgets``: set, read and clear spend budgets (``domain.budgets``).

Every route needs an API key with the ``admin`` scope (``batchery keys create --scopes admin``): a
missing or bad key answers 401 ``missing_api_key`` or ``invalid_api_key``, a key without the scope
403 ``insufficient_scope``. ``PUT`` replaces a budget's limits; ``GET`` shows them with the spend of
the current UTC day and month; ``DELETE`` removes the budget (the tenant then has no limit).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query

from api.auth import AUTH_RESPONSES, require_scope
from api.deps import SessionDep
from domain.budgets.limits import clear_budget, set_budget
from domain.budgets.schemas import BudgetIn, BudgetList, BudgetOut, budget_out
from domain.budgets.status import budget_status
from domain.errors import NotFound
from domain.jobs.schemas import ErrorBody
from domain.storage.models import utcnow

router = APIRouter(
    prefix="/v1/admin/budgets",
    tags=["admin"],
    dependencies=[require_scope("admin")],
    responses={**AUTH_RESPONSES, 404: {"model": ErrorBody}, 422: {"model": ErrorBody}},
)

Tenant = Annotated[str, Path(max_length=64, description="the tenant")]
KeyId = Annotated[str, Path(max_length=32, description="one of the tenant's API key ids")]


def _one(session: SessionDep, tenant: str, key_id: str | None) -> BudgetOut:
    for status in budget_status(session, now=utcnow(), tenant_id=tenant):
        if status.key_id == (key_id or ""):
            return budget_out(status)
    whose = f"API key {key_id} of tenant {tenant!r}" if key_id else f"tenant {tenant!r}"
    raise NotFound(f"no budget is set for {whose}", param="key_id" if key_id else "tenant")


@router.get("", response_model=BudgetList)
def list_all(session: SessionDep, tenant: Annotated[str | None, Query(max_length=64)] = None) -> BudgetList:
    """Every budget (of one tenant), with the spend of the current UTC day and month."""
    return BudgetList(data=[budget_out(s) for s in budget_status(session, now=utcnow(), tenant_id=tenant)])


@router.put("/{tenant}", response_model=BudgetOut)
def put_tenant(tenant: Tenant, body: BudgetIn, session: SessionDep) -> BudgetOut:
    """Set (replace) the tenant's own budget."""
    set_budget(session, body.limits(), tenant_id=tenant)
    return _one(session, tenant, None)


@router.get("/{tenant}", response_model=BudgetOut)
def get_tenant(tenant: Tenant, session: SessionDep) -> BudgetOut:
    return _one(session, tenant, None)


@router.delete("/{tenant}", response_model=BudgetList)
def delete_tenant(tenant: Tenant, session: SessionDep) -> BudgetList:
    """Remove the tenant's own budget (its keys' budgets stay); answers what remains."""
    if not clear_budget(session, tenant_id=tenant):
        raise NotFound(f"no budget is set for tenant {tenant!r}", param="tenant")
    return BudgetList(data=[budget_out(s) for s in budget_status(session, now=utcnow(), tenant_id=tenant)])


@router.put("/{tenant}/keys/{key_id}", response_model=BudgetOut)
def put_key(tenant: Tenant, key_id: KeyId, body: BudgetIn, session: SessionDep) -> BudgetOut:
    """Set (replace) the budget of one of the tenant's API keys (it applies on top of the tenant's)."""
    set_budget(session, body.limits(), tenant_id=tenant, key_id=key_id)
    return _one(session, tenant, key_id)


@router.get("/{tenant}/keys/{key_id}", response_model=BudgetOut)
def get_key(tenant: Tenant, key_id: KeyId, session: SessionDep) -> BudgetOut:
    return _one(session, tenant, key_id)


@router.delete("/{tenant}/keys/{key_id}", response_model=BudgetList)
def delete_key(tenant: Tenant, key_id: KeyId, session: SessionDep) -> BudgetList:
    if not clear_budget(session, tenant_id=tenant, key_id=key_id):
        raise NotFound(f"no budget is set for API key {key_id} of tenant {tenant!r}", param="key_id")
    return BudgetList(data=[budget_out(s) for s in budget_status(session, now=utcnow(), tenant_id=tenant)])
