"""``batchery budgets``: set, show and clear spend budgets per tenant or per API key.

``budgets set`` replaces every limit of one budget (a limit not given is no limit); ``budgets show``
lists budgets with the spend and reservations of the current UTC day and month. A budget set here is
seen by each API process within a second (``domain.budgets.limits.BudgetBook``).
"""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from cli.command_session import command_session
from config.errors import BatcheryError
from domain.budgets.limits import BudgetLimits, clear_budget, set_budget
from domain.budgets.schemas import budget_out
from domain.budgets.status import budget_status


class BudgetsError(BatcheryError):
    """The budgets command could not do what was asked."""


def add_parser(sub: Any) -> None:
    parser = sub.add_parser("budgets", help="set, show and clear spend budgets (USD and tokens)")
    actions = parser.add_subparsers(dest="budgets_action", required=True, metavar="ACTION")

    setting = actions.add_parser("set", help="set (replace) the limits of a tenant's or a key's budget")
    setting.add_argument("--tenant", required=True, help="the tenant the budget is for")
    setting.add_argument("--key", help="an API key id of the tenant: the budget is for that key alone")
    setting.add_argument("--usd-per-day", type=_usd, metavar="USD", help="USD per UTC day")
    setting.add_argument("--usd-per-month", type=_usd, metavar="USD", help="USD per UTC month")
    setting.add_argument("--tokens-per-day", type=_tokens, metavar="N", help="tokens per UTC day")
    setting.add_argument("--tokens-per-month", type=_tokens, metavar="N", help="tokens per UTC month")
    setting.add_argument(
        "--allow-unpriced",
        action="store_true",
        help="let models without a price through a USD limit (counted as $0; default: refuse them)",
    )
    setting.set_defaults(handler=run_set)

    show = actions.add_parser("show", help="budgets with the spend of the current UTC day and month")
    show.add_argument("--tenant", help="only this tenant's budgets")
    show.add_argument("--json", action="store_true", help="one JSON object per budget")
    show.set_defaults(handler=run_show)

    clear = actions.add_parser("clear", help="remove a budget: no limit any more")
    clear.add_argument("--tenant", required=True)
    clear.add_argument("--key", help="the API key id whose budget to remove")
    clear.set_defaults(handler=run_clear)


def _usd(text: str) -> Decimal:
    try:
        value = Decimal(text)
    except InvalidOperation as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not an amount in USD, such as 25 or 2.50") from exc
    if not value.is_finite() or value < 0:
        raise argparse.ArgumentTypeError(f"{text!r}: an amount cannot be negative")
    return value


def _tokens(text: str) -> int:
    try:
        value = int(text.replace("_", ""))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of tokens") from exc
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r}: a limit cannot be negative")
    return value


def run_set(args: argparse.Namespace) -> int:
    limits = BudgetLimits(
        usd_per_day=args.usd_per_day,
        usd_per_month=args.usd_per_month,
        tokens_per_day=args.tokens_per_day,
        tokens_per_month=args.tokens_per_month,
        allow_unpriced=args.allow_unpriced,
    )
    with command_session(BudgetsError) as session:
        set_budget(session, limits, tenant_id=args.tenant, key_id=args.key)
    whose = f"API key {args.key} of tenant {args.tenant}" if args.key else f"tenant {args.tenant}"
    shown = [
        f"{name.replace('_', ' ')} {value}"
        for name in ("usd_per_day", "usd_per_month", "tokens_per_day", "tokens_per_month")
        if (value := getattr(limits, name)) is not None
    ]
    print(
        f"budget set for {whose}: {', '.join(shown) or 'no limits'}"
        f"{'; unpriced models allowed' if limits.allow_unpriced else ''}"
    )
    return 0


def run_clear(args: argparse.Namespace) -> int:
    with command_session(BudgetsError) as session:
        removed = clear_budget(session, tenant_id=args.tenant, key_id=args.key)
    whose = f"API key {args.key} of tenant {args.tenant}" if args.key else f"tenant {args.tenant}"
    if not removed:
        raise BudgetsError(f"no budget is set for {whose}")
    print(f"budget removed for {whose}: no limit any more")
    return 0


def _limit(used: float, reserved: float, limit: float | None, money: bool) -> str:
    def text(value: float) -> str:
        return f"${value:,.2f}" if money else f"{value:,.0f}"

    spent = f"{text(used)} + {text(reserved)}"
    return f"{spent} / {text(limit)}" if limit is not None else f"{spent} / -"


def run_show(args: argparse.Namespace) -> int:
    with command_session(BudgetsError) as session:
        budgets = [
            budget_out(status)
            for status in budget_status(session, now=datetime.now(UTC), tenant_id=args.tenant)
        ]
    if args.json:
        for budget in budgets:
            print(json.dumps(budget.model_dump(mode="json")))
        return 0
    columns = [
        "tenant",
        "key",
        "period",
        "usd spent + reserved / limit",
        "tokens spent + reserved / limit",
        "resets",
    ]
    table = []
    for budget in budgets:
        for period in budget.periods:
            table.append(
                [
                    budget.tenant,
                    budget.key_id or "*",
                    period.period.value,
                    _limit(period.spent_usd, period.reserved_usd, period.limit_usd, True),
                    _limit(period.spent_tokens, period.reserved_tokens, period.limit_tokens, False),
                    period.resets_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
                ]
            )
    if not table:
        print("no budgets are set: every tenant is unlimited")
        return 0
    widths = [max([len(column), *(len(line[i]) for line in table)]) for i, column in enumerate(columns)]
    print("  ".join(column.upper().ljust(width) for column, width in zip(columns, widths, strict=True)))
    for line in table:
        print("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip())
    return 0
