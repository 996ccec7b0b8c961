"""``batchery dispatcher``: the dispatcher loop as a process of its own (``workers.dispatcher``).

Workers run dispatcher rounds in the background unless started with ``--no-dispatch``; a dedicated
process keeps the windows full and the lost messages recovered even while every worker is busy or down,
and takes that work off the workers' own CPU (``bench/README.md`` measures it). Any number may run.
It tops the windows up every ``--top-up-interval`` seconds and recovers every ``--interval``.
"""

from __future__ import annotations

import argparse
import logging
import signal
from typing import Any

from config.errors import ConfigError
from config.settings import get_settings


def add_parser(sub: Any) -> None:
    parser = sub.add_parser("dispatcher", help="move jobs from the database backlog into the tier queues")
    parser.add_argument("--tier", action="append", default=[], help="tier to serve (repeatable; default all)")
    parser.add_argument(
        "--interval", type=float, help="seconds between full rounds, recovery included (default: settings)"
    )
    parser.add_argument(
        "--top-up-interval",
        type=float,
        default=0.1,
        help="seconds between rounds that only top the windows up (default 0.1)",
    )
    parser.set_defaults(handler=run_dispatcher)


def run_dispatcher(args: argparse.Namespace) -> int:
    import redis

    from domain.storage.sessions import make_engine, make_session_factory
    from workers.celery_app import create_celery
    from workers.dispatcher import BrokerSender, Dispatcher, DispatchPump

    settings = get_settings()
    unknown = [name for name in args.tier if name not in settings.tiers.tiers]
    if unknown:
        known = ", ".join(settings.tiers.tiers)
        raise ConfigError(f"--tier: unknown tier {', '.join(unknown)}; known: {known}")
    interval = args.interval if args.interval and args.interval > 0 else settings.dispatch_interval_seconds
    if not 0 < args.top_up_interval <= interval:
        raise ConfigError(f"--top-up-interval: must be above 0 and at most --interval ({interval} s)")
    top_up = args.top_up_interval
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    engine = make_engine(settings.database_url, pool_size=2)
    dispatcher = Dispatcher(
        settings,
        make_session_factory(engine),
        BrokerSender(create_celery(settings)),
        redis.Redis.from_url(settings.redis_url, socket_timeout=5),
        tiers=args.tier or None,
    )
    pump = DispatchPump(lambda: dispatcher, interval=interval, min_gap=0, top_up_interval=top_up)

    def stop(_signum: int, _frame: object) -> None:
        pump.stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    pump.nudge()
    pump.run()
    engine.dispose()
    return 0
