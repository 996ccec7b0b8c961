"""``batchery top``: a live view of every tier, refreshed each second; ``--once`` prints one frame.

Per tier: messages in its broker queue, its backlog and jobs in flight (from the database); per tier
and per model, over the last minute: requests and tokens used against the RPM and TPM limits, the
average limiter wait, 429s, other upstream errors and failed jobs, and a pause the limiter is holding
after a 429. Under it, each spend budget's USD and tokens spent (+ reserved) against its limits in the
current UTC day and month. It reads the same Redis and database as the workers, from any machine.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import redis
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text
from sqlalchemy.exc import SQLAlchemyError

from cli.top_data import (
    ModelView,
    ProviderBatchView,
    TierView,
    collect,
    collect_budgets,
    read_provider_batches,
)
from cli.top_refusals import Refusals, read_refusals
from config.errors import BatcheryError
from config.settings import Settings, get_settings
from domain.budgets.status import PeriodSpend
from domain.errors import Unavailable
from domain.metrics.store import MetricStore
from domain.storage.sessions import make_engine, make_session_factory
from workers.limiter import RedisLimiter

ONCE_WIDTH = 132
"""Columns of a ``--once`` frame written to a pipe or a file (a terminal uses its own width)."""


COLUMNS = (
    "queue",
    "backlog",
    "in flight",
    "RPM used/limit",
    "TPM used/limit",
    "wait ms",
    "429s",
    "errors",
    "failed",
)


class TopError(BatcheryError):
    """``batchery top`` could not read the figures."""


def add_parser(sub: Any) -> None:
    parser = sub.add_parser("top", help="live view of each tier: queues, in flight, RPM/TPM, waits, 429s")
    parser.add_argument("--once", action="store_true", help="print one frame and exit (for scripts)")
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between refreshes (default 1)")
    parser.set_defaults(handler=run_top)


def compact(value: float) -> str:
    """``1234`` as ``1.2k``, ``4000000`` as ``4M``; small figures as whole numbers."""
    for bound, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= bound:
            text = f"{value / bound:.1f}".removesuffix(".0")
            return f"{text}{suffix}"
    return f"{value:.0f}"


def _used(used: float, limit: int) -> Text:
    if limit <= 0:
        return Text(f"{compact(used)}/-", style="dim")
    share = used / limit
    style = "red" if share >= 0.9 else "yellow" if share >= 0.7 else ""
    return Text(f"{compact(used)}/{compact(limit)} {share:4.0%}", style=style)


def _count(value: float, style: str = "red") -> Text:
    return Text(compact(value), style=style if value >= 0.5 else "dim")


def _model_row(model: ModelView) -> list[Text | str]:
    name = Text(f"  {model.model}", style="dim")
    if model.paused_seconds > 0:
        name.append(f" paused {model.paused_seconds:.1f}s", style="bold red")
    return [
        name,
        "",
        "",
        "",
        _used(model.rpm_used, model.rpm_limit),
        _used(model.tpm_used, model.tpm_limit),
        f"{model.wait_ms:.0f}",
        _count(model.rate_limited, "yellow"),
        _count(model.errors),
        _count(model.failed),
    ]


def render(
    views: list[TierView],
    *,
    title: str = "batchery top",
    refusals: Refusals | None = None,
    provider_batches: ProviderBatchView | None = None,
) -> Table:
    """One frame: a row per tier, then a row per model of that tier; the API's refusals and the provider
    Batch API path under it."""
    caption = "RPM, TPM, waits, 429s, errors and failed: last 60 s"
    if refusals is not None:
        caption += "\n" + refusals.caption()
    if provider_batches is not None:
        caption += "\n" + provider_batches.caption()
    table = Table(title=title, caption=caption, expand=False)
    table.add_column("tier / model", no_wrap=True)
    for header in COLUMNS:
        table.add_column(header, justify="right", no_wrap=True)
    for view in views:
        table.add_row(
            Text(view.tier, style="bold"),
            compact(view.queue),
            compact(view.backlog),
            compact(view.in_flight),
            _used(view.rpm_used, view.rpm_limit),
            _used(view.tpm_used, view.tpm_limit),
            f"{view.wait_ms:.0f}",
            _count(view.rate_limited, "yellow"),
            _count(view.errors),
            _count(view.failed),
            end_section=not view.models,
        )
        for index, model in enumerate(view.models):
            table.add_row(*_model_row(model), end_section=index == len(view.models) - 1)
    return table


def _spend(spent: float, reserved: float, limit: float | None, money: bool) -> Text:
    def text(value: float) -> str:
        return f"${value:,.2f}" if money else compact(value)

    shown = f"{text(spent)}+{text(reserved)}"
    if limit is None:
        return Text(f"{shown}/-", style="dim")
    share = (spent + reserved) / limit if limit > 0 else 1.0
    style = "red" if share >= 0.9 else "yellow" if share >= 0.7 else ""
    return Text(f"{shown}/{text(limit)} {share:4.0%}", style=style)


def render_budgets(spends: list[PeriodSpend]) -> Table | None:
    """Each budget's current day and month: spent + reserved / limit; None when no budget is set."""
    if not spends:
        return None
    table = Table(title="budgets", caption="spent + reserved / limit; key * is the whole tenant")
    for header in ("tenant", "key", "period", "USD", "tokens", "resets (UTC)"):
        table.add_column(header, justify="left" if header in ("tenant", "key", "period") else "right")
    for spend in spends:
        table.add_row(
            spend.tenant_id,
            spend.key_id or "*",
            spend.period.value,
            _spend(
                float(spend.spent_usd),
                float(spend.reserved_usd),
                None if spend.limit_usd is None else float(spend.limit_usd),
                True,
            ),
            _spend(spend.spent_tokens, spend.reserved_tokens, spend.limit_tokens, False),
            spend.resets_at.strftime("%m-%d %H:%M"),
        )
    return table


class Top:
    """Reads frames for one deployment."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.client = redis.Redis.from_url(settings.redis_url, socket_timeout=5, socket_connect_timeout=5)
        self.engine = make_engine(settings.database_url, pool_size=1)
        self.sessions = make_session_factory(self.engine)
        self.store = MetricStore(self.client, settings.redis_prefix)
        self.limiter = RedisLimiter(self.client, prefix=settings.redis_prefix)

    def frame(self) -> RenderableType:
        try:
            views = collect(self.settings.tiers, self.store, self.sessions, self.limiter, time.time)
            refusals = read_refusals(self.store, time.time())
            budgets = render_budgets(collect_budgets(self.sessions))
            batches = read_provider_batches(self.store, self.sessions)
        except (redis.RedisError, OSError) as exc:
            raise TopError(
                f"cannot read Redis at {_where(self.settings.redis_url)}: {type(exc).__name__}"
            ) from exc
        except (SQLAlchemyError, Unavailable) as exc:
            raise TopError(f"cannot read the database: {type(exc).__name__}") from exc
        title = f"batchery top  {time.strftime('%H:%M:%S')}"
        tiers = render(views, title=title, refusals=refusals, provider_batches=batches)
        return tiers if budgets is None else Group(tiers, budgets)

    def close(self) -> None:
        self.client.close()
        self.engine.dispose()


def _where(url: str) -> str:
    """The host part of a URL, without any password."""
    return url.split("@")[-1]


def run_top(args: argparse.Namespace) -> int:
    top = Top(get_settings())
    try:
        if args.once:
            console = Console(width=None if Console().is_terminal else ONCE_WIDTH)
            console.print(top.frame())
            return 0
        with Live(top.frame(), auto_refresh=False, screen=False) as live:
            while True:
                time.sleep(max(0.1, args.interval))
                try:
                    live.update(top.frame(), refresh=True)
                except TopError as exc:
                    live.update(Group(Text(f"batchery top: {exc.message}", style="bold red")), refresh=True)
    finally:
        top.close()
