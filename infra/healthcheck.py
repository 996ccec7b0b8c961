"""A container health check for the processes that serve no HTTP: ``python -m infra.healthcheck``.

It passes when the process named by ``--process`` runs in this container (the compose services run it
as their command) and the broker and the database answer with the process's own settings. Exit 0 when
healthy, 1 otherwise, with the reason on stderr.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import redis
import sqlalchemy

from config.settings import get_settings


def running(process: str, proc: Path = Path("/proc")) -> bool:
    """Whether a process of this container runs ``batchery <process>``."""
    for entry in proc.glob("[0-9]*/cmdline"):
        try:
            argv = entry.read_bytes().split(b"\0")
        except OSError:
            continue
        words = [word.decode(errors="replace") for word in argv if word]
        if process in words and any(word.endswith(("batchery", "cli.main")) for word in words):
            return True
    return False


def check(process: str) -> str | None:
    """None when healthy, else the reason."""
    if not running(process):
        return f"no `batchery {process}` process runs"
    settings = get_settings()
    try:
        client = redis.Redis.from_url(settings.redis_url, socket_timeout=5, socket_connect_timeout=5)
        client.ping()
        client.close()
    except redis.RedisError as exc:
        return f"the broker does not answer ({type(exc).__name__})"
    engine = sqlalchemy.create_engine(settings.database_url, pool_pre_ping=False)
    try:
        with engine.connect() as connection:
            connection.execute(sqlalchemy.text("SELECT 1"))
    except sqlalchemy.exc.SQLAlchemyError as exc:
        return f"the database does not answer ({type(exc).__name__})"
    finally:
        engine.dispose()
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.healthcheck")
    parser.add_argument("--process", required=True, help="the batchery command this container runs")
    args = parser.parse_args(argv)
    reason = check(args.process)
    if reason is not None:
        print(f"unhealthy: {reason}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
