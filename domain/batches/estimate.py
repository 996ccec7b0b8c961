"""A batch's estimated charge before it is stored, for budget admission (``domain.budgets``).

``batch_charges`` reads the batch's input file once, line by line, with the same checks ingestion
makes (``domain.batches.ingest.LineChecker``), and sums the estimate of every valid line per model
(``domain.budgets.pricing.estimate_charge``). Invalid lines are left out: such a batch fails at
ingestion, and its reservation is then released. Only tenants with a budget pay for this read.
"""

from __future__ import annotations

from datetime import date

from sqlalchemy.orm import Session

from config.prices import PriceTable
from config.settings import Settings
from domain.batches import file_repository
from domain.batches.ingest import LineChecker, RequestLine, iter_lines
from domain.batches.schemas import Endpoint
from domain.budgets.pricing import Charge, estimate_charge
from domain.jobs.input_limits import InputLimits


def batch_charges(
    session: Session,
    settings: Settings,
    prices: PriceTable,
    *,
    tenant_id: str,
    input_file_id: str,
    endpoint: Endpoint,
    day: date,
) -> list[Charge]:
    """One charge per model: the summed estimate of the file's valid lines for that model."""
    stored = file_repository.get_file(session, input_file_id, tenant_id=tenant_id)
    checker = LineChecker(
        endpoint,
        settings.tiers,
        InputLimits.from_settings(settings),
        default_max_tokens=settings.default_max_tokens,
    )
    sums: dict[str, Charge] = {}
    for number, raw in iter_lines(file_repository.iter_chunks(session, stored.id)):
        line = checker.check(number, raw)
        if not isinstance(line, RequestLine):
            continue
        charge = estimate_charge(line.kind.value, line.model, line.body, line.estimated_tokens, prices, day)
        seen = sums.get(line.model)
        if seen is not None:
            charge = Charge(
                line.model,
                seen.tokens + charge.tokens,
                seen.usd_nano + charge.usd_nano,
                seen.priced and charge.priced,
            )
        sums[line.model] = charge
    return list(sums.values())
