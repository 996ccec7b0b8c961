"""``GET /v1/usage``: requests, tokens, images and cost, summed from stored job usage.

A key sees its own tenant's usage; a key with the ``admin`` scope sees every tenant's (and may narrow
it with ``tenant=``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query

from api.auth import PrincipalDep, require_scope
from api.deps import SessionDep, SettingsDep
from config.prices import load_prices
from domain.errors import InvalidRequest, PermissionDenied
from domain.jobs.schemas import ErrorBody
from domain.tenancy.api_keys import Scope
from domain.tokens.usage_report import GroupBy, as_utc, usage_report
from domain.tokens.usage_schemas import UsageReport, usage_out

router = APIRouter(prefix="/v1/usage", tags=["usage"])

_ERRORS: dict[int | str, dict[str, object]] = {code: {"model": ErrorBody} for code in (401, 403, 422, 503)}


def _utc(moment: datetime | None, param: str) -> datetime | None:
    try:
        return None if moment is None else as_utc(moment)
    except OverflowError as exc:
        raise InvalidRequest(f"{param} is out of range", param=param) from exc


@router.get("", response_model=UsageReport, responses=_ERRORS, dependencies=[require_scope("jobs:read")])
def get_usage(
    session: SessionDep,
    settings: SettingsDep,
    principal: PrincipalDep,
    group_by: GroupBy = GroupBy.model,
    start: Annotated[
        datetime | None, Query(description="jobs finished at or after this time (ISO 8601; UTC if naive)")
    ] = None,
    end: Annotated[datetime | None, Query(description="jobs finished before this time")] = None,
    tenant: Annotated[
        str | None, Query(max_length=64, description="admin only: one tenant (default: every tenant)")
    ] = None,
) -> UsageReport:
    """Usage and cost per model, tier, UTC day or tenant.

    Cost uses the price in effect on the day each job finished (``config/prices.toml``).
    """
    start, end = _utc(start, "start"), _utc(end, "end")
    if start is not None and end is not None and start >= end:
        raise InvalidRequest("start must be before end", param="start")
    if Scope.admin.value in principal.scopes:
        tenant_id = tenant
    elif tenant is None or tenant == principal.tenant_id:
        tenant_id = principal.tenant_id
    else:
        raise PermissionDenied("only an admin key can read another tenant's usage", param="tenant")
    prices = load_prices(settings.prices_file)
    rows = usage_report(session, prices, group_by=group_by, tenant_id=tenant_id, start=start, end=end)
    return usage_out(rows, group_by=group_by, start=start, end=end, tenant=tenant_id)
