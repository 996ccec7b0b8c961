"""``batchery dispatcher``: the dispatcher loop as a process of its own (``workers.dispatcher``).

Workers already run dispatcher rounds in the background; a dedicated process keeps the windows full
and the lost messages recovered even while every worker is busy or down. Any number may run.
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
    parser.add_argument("--interval", type=float, help="seconds between rounds (default: settings)")
    parser.set_defaults(handler=run_dispatcher)


def run_dispatcher(args: argparse.Namespace) -> int:
    import redis

    from domain.db import make_engine, make_session_factory
    from workers.celery_app import create_celery
    from workers.dispatcher import BrokerSender, Dispatcher, DispatchPump

    settings = get_settings()
    unknown = [name for name in args.tier if name not in settings.tiers.tiers]
    if unknown:
        known = ", ".join(settings.tiers.tiers)
        raise ConfigError(f"--tier: unknown tier {', '.join(unknown)}; known: {known}")
    interval = args.interval if args.interval and args.interval > 0 else settings.dispatch_interval_seconds
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    engine = make_engine(settings.database_url, pool_size=2)
    dispatcher = Dispatcher(
        settings,
        make_session_factory(engine),
        BrokerSender(create_celery(settings)),
        redis.Redis.from_url(settings.redis_url, socket_timeout=5),
        tiers=args.tier or None,
    )
    pump = DispatchPump(lambda: dispatcher, interval=interval)

    def stop(_signum: int, _frame: object) -> None:
        pump.stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    pump.nudge()
    pump.run()
    engine.dispose()
    return 0
