"""The long-running commands: api, worker, beat, flower, sim, and db upgrade."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from config.errors import ConfigError
from config.settings import get_settings

ROOT = Path(__file__).resolve().parent.parent


def _port(value: str) -> int:
    try:
        port = int(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a port number: {value!r}") from exc
    if not 0 < port < 65536:
        raise argparse.ArgumentTypeError(f"port out of range: {port}")
    return port


def _positive(value: str) -> int:
    try:
        number = int(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a whole number: {value!r}") from exc
    if number < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return number


def add_api_parser(sub: Any) -> None:
    parser = sub.add_parser("api", help="run the HTTP API (uvicorn)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=_port, default=8000)
    parser.add_argument("--workers", type=_positive, default=1, help="serving processes (own socket each)")
    parser.set_defaults(handler=run_api)


API_SHUTDOWN_GRACE_SECONDS = 30


def run_api(args: argparse.Namespace) -> int:
    import logging.config

    from cli.api_processes import ServeOptions, serve
    from config.prices import load_prices
    from infra.log_format import uvicorn_log_config

    settings = get_settings()  # fail fast, naming the variable, before uvicorn starts
    settings.check_provider_keys()
    load_prices(settings.prices_file)
    log_config = uvicorn_log_config(settings.log_format, settings.log_level)
    logging.config.dictConfig(log_config)
    options = ServeOptions(
        host=args.host,
        port=args.port,
        log_level=settings.log_level.lower(),
        log_config=log_config,
        # calls waiting on their jobs (drop-in endpoints) would hold a restart for up to their timeout;
        # past this, they are cut off and their jobs complete anyway (README, Drop-in OpenAI endpoints)
        graceful_shutdown_seconds=API_SHUTDOWN_GRACE_SECONDS,
    )
    return serve(options, args.workers)


def add_worker_parser(sub: Any) -> None:
    parser = sub.add_parser("worker", help="run a Celery worker for one or more tiers")
    parser.add_argument("--tier", action="append", default=[], help="tier to serve (repeatable; default all)")
    parser.add_argument("--concurrency", type=_positive, help="threads (default: the tiers' concurrency)")
    parser.add_argument("--name", help="worker node name (default tiers@hostname)")
    parser.add_argument("--loglevel", help="DEBUG, INFO, WARNING or ERROR (default: BATCHERY_LOG_LEVEL)")
    parser.add_argument("--no-control", action="store_true", help="skip the control and webhook queues")
    parser.add_argument(
        "--no-dispatch",
        action="store_true",
        help="run no dispatcher rounds in this worker (a `batchery dispatcher` process fills the queues)",
    )
    parser.set_defaults(handler=run_worker)


def run_worker(args: argparse.Namespace) -> int:
    from config.prices import load_prices
    from infra.celery_conf import CONTROL_QUEUE, WEBHOOK_QUEUE
    from workers.celery_app import create_celery
    from workers.tasks import register_tasks

    settings = get_settings()
    settings.check_provider_keys()
    load_prices(settings.prices_file)  # the job metrics price each call; a bad file stops start-up
    tiers = settings.tiers.tiers
    names = args.tier or list(tiers)
    unknown = [name for name in names if name not in tiers]
    if unknown:
        raise ConfigError(f"--tier: unknown tier {', '.join(unknown)}; known: {', '.join(tiers)}")
    concurrency = args.concurrency or sum(tiers[name].concurrency for name in names)
    queues = [tiers[name].queue for name in names]
    if not args.no_control:
        queues += [CONTROL_QUEUE, WEBHOOK_QUEUE]
    app = create_celery(settings)
    register_tasks(app, settings, concurrency=concurrency, dispatch=not args.no_dispatch)
    node = args.name or f"{'+'.join(names)}@%h"
    app.worker_main(
        argv=[
            "worker",
            "--queues",
            ",".join(queues),
            "--pool",
            "threads",
            "--concurrency",
            str(concurrency),
            "--hostname",
            node,
            "--loglevel",
            args.loglevel or settings.log_level,
            "--task-events",
            "--without-mingle",
            "--without-gossip",
        ]
    )
    return 0


def add_beat_parser(sub: Any) -> None:
    parser = sub.add_parser("beat", help="run the scheduler for the sweeper")
    parser.add_argument("--schedule", default=str(ROOT / "var" / "celerybeat-schedule"))
    parser.set_defaults(handler=run_beat)


def run_beat(args: argparse.Namespace) -> int:
    from workers.celery_app import create_celery
    from workers.tasks import register_tasks

    settings = get_settings()
    Path(args.schedule).parent.mkdir(parents=True, exist_ok=True)
    app = create_celery(settings)
    register_tasks(app, settings)
    app.start(argv=["beat", "--schedule", args.schedule, "--loglevel", settings.log_level])
    return 0


def add_flower_parser(sub: Any) -> None:
    parser = sub.add_parser("flower", help="run Flower against the broker")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=_port, default=5555)
    parser.set_defaults(handler=run_flower)


def flower_command(host: str, port: int) -> list[str]:
    """Flower's command line. The broker URL, which may hold a password, is not on it: Celery reads it
    from ``CELERY_BROKER_URL`` in the environment (``cli.flower_auth.flower_env``), so ``ps`` never
    shows it."""
    return [
        sys.executable,
        "-m",
        "celery",
        "flower",
        f"--address={host}",
        f"--port={port}",
        "--purge_offline_workers=60",
    ]


def run_flower(args: argparse.Namespace) -> int:
    from cli.flower_auth import flower_env

    env, note = flower_env(get_settings(), os.environ)
    if note:
        print(f"Flower {note}", flush=True)
    # Flower replaces this process: a SIGTERM to it stops Flower itself, and no parent is left behind
    argv = flower_command(args.host, args.port)
    os.execvpe(argv[0], argv, env)  # noqa: S606 (the argv is ours, no shell)


def add_sim_parser(sub: Any) -> None:
    parser = sub.add_parser("sim", help="run the OpenAI-compatible simulator", add_help=False)
    parser.add_argument("sim_args", nargs=argparse.REMAINDER)
    parser.set_defaults(handler=run_sim)


def run_sim(args: argparse.Namespace) -> int:
    return run_simulator(list(args.sim_args))


def run_simulator(argv: list[str]) -> int:
    from simulator.server import main as sim_main

    return int(sim_main(argv))


def add_db_parser(sub: Any) -> None:
    parser = sub.add_parser("db", help="database migrations")
    parser.add_argument("action", choices=["upgrade", "current"])
    parser.add_argument("--revision", default="heads")
    parser.set_defaults(handler=run_db)


def run_db(args: argparse.Namespace) -> int:
    from cli.migrations import current, upgrade

    settings = get_settings()
    if args.action == "upgrade":
        settings.check_provider_keys()  # compose runs this first: a missing key stops the whole stack
        upgrade(settings.database_url, args.revision)
        print(f"database upgraded to {args.revision}")
    else:
        print(current(settings.database_url) or "(empty)")
    return 0
