"""Budget admission for the API's submission routes (``domain.budgets.admission``).

Each route calls ``reserve_jobs`` (or ``reserve_batch``) inside the transaction that stores the work,
after the rows are written and before the commit: over a budget, the error rolls the whole
transaction back, so nothing is stored. A tenant without a budget costs no query (``BUDGET_BOOK``).
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.orm import Session

from config.prices import load_prices
from config.settings import Settings
from domain.budgets.admission import Holder, reserve
from domain.budgets.limits import BUDGET_BOOK
from domain.budgets.pricing import Charge, estimate_charge
from domain.jobs.repository import NewJob
from domain.storage.models import utcnow


def has_budget(session: Session, *, tenant_id: str) -> bool:
    """Whether any budget is set for ``tenant_id`` (as this process last read it)."""
    return bool(BUDGET_BOOK.budgets_of(session, tenant_id=tenant_id))


def reserve_jobs(
    session: Session,
    settings: Settings,
    *,
    tenant_id: str,
    key_id: str | None,
    jobs: Sequence[tuple[str, NewJob]],
) -> None:
    """Reserve the estimated charge of each ``(job id, job)`` against the caller's budgets."""
    if not jobs or not has_budget(session, tenant_id=tenant_id):
        return
    now = utcnow()
    prices = load_prices(settings.prices_file)
    charges = [
        (
            Holder("job", job_id),
            estimate_charge(job.kind, job.model, job.request, job.estimated_tokens, prices, now.date()),
        )
        for job_id, job in jobs
    ]
    reserve(session, tenant_id=tenant_id, key_id=key_id, charges=charges, now=now)


def reserve_batch(
    session: Session, *, tenant_id: str, key_id: str | None, batch_id: str, charges: Sequence[Charge]
) -> None:
    """Reserve a whole batch's estimated charge (the sum of its lines') under the batch's id."""
    if not charges:
        return
    unpriced = sorted({charge.model for charge in charges if not charge.priced})
    total = Charge(
        model="', '".join(unpriced) if unpriced else charges[0].model,
        tokens=sum(charge.tokens for charge in charges),
        usd_nano=sum(charge.usd_nano for charge in charges),
        priced=not unpriced,
    )
    reserve(
        session,
        tenant_id=tenant_id,
        key_id=key_id,
        charges=[(Holder("batch", batch_id), total)],
        now=utcnow(),
    )
