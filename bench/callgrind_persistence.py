"""Instructions per job on PostgreSQL, counted by callgrind: deterministic, immune to this machine's
noise (other processes, CPU steal), unlike a timer.

Four measurements, each the difference between a run over ``--jobs`` (two sizes) divided by the
difference in jobs, so start-up and imports cancel out:

- ``sqlalchemy``: the worker's two statements per job as it runs them for a job without a webhook:
  the claim, and the completion with its attempt-log row (one statement), each on an autocommit
  connection of SQLAlchemy's pool;
- ``runner``: a whole ``JobRunner.run`` per job (claim, upstream call through ``httpx.MockTransport``,
  completion), the worker's CPU per job but for Celery's own;
- ``hot``: the same two statements through the former hand-written psycopg path
  (``domain.storage.pg_hot_path``), measured only where that module still exists.

    python -m bench.callgrind_persistence [--jobs 20 120] [--modes sqlalchemy runner] [--hot-tree DIR]

It creates a database of its own on the local PostgreSQL (``--server``) and drops it at the end.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg

SERVER = "postgresql+psycopg://postgres@127.0.0.1:5432"
_COLLECTED = re.compile(r"Collected\s*:\s*(\d+)")


@contextmanager
def _database(server: str) -> Iterator[str]:
    from domain.storage.models import Base
    from domain.storage.sessions import make_engine

    name = f"bench_cg_{uuid.uuid4().hex[:10]}"
    admin = server.replace("postgresql+psycopg://", "postgresql://") + "/postgres"
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    url = f"{server}/{name}"
    engine = make_engine(url)
    Base.metadata.create_all(engine)
    engine.dispose()
    try:
        yield url
    finally:
        with psycopg.connect(admin, autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _insert_jobs(url: str, count: int) -> list[str]:
    from domain.jobs import repository
    from domain.jobs.repository import NewJob
    from domain.storage.sessions import make_engine, make_session_factory

    engine = make_engine(url)
    sessions = make_session_factory(engine)
    request = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Say hello"}]}
    with sessions.begin() as session:
        ids = [
            repository.create_job(
                session, NewJob("chat", "gpt-4o-mini", "standard", request, tenant_id="default")
            )[0].id
            for _ in range(count)
        ]
    engine.dispose()
    return ids


def _answer() -> dict[str, Any]:
    return {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "created": 0,
        "model": "gpt-4o-mini",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": "hello"}, "finish_reason": "stop"}
        ],
        "usage": {"prompt_tokens": 9, "completion_tokens": 1, "total_tokens": 10},
    }


def _child(mode: str, url: str, ids: list[str]) -> None:
    """Run ``ids`` through ``mode`` (inside callgrind)."""
    from domain.jobs import repository
    from domain.jobs.attempts import AttemptOutcome, AttemptRecord
    from domain.storage.models import utcnow
    from domain.storage.sessions import make_engine, make_session_factory
    from domain.tokens.estimates import usage_columns

    # no ping at checkout: a worker's pool pings only a connection idle for seconds, never in a busy loop
    engine = make_engine(url, pool_size=4, pre_ping=False)
    sessions = make_session_factory(engine)
    columns = usage_columns("chat", _answer()["usage"], images=0)

    def succeeded(number: int) -> AttemptRecord:
        return AttemptRecord(number=number, outcome=AttemptOutcome.succeeded, finished_at=utcnow())

    if mode == "runner":
        import httpx

        from config.settings import load_settings
        from workers.runner import JobRunner

        client = httpx.Client(transport=httpx.MockTransport(lambda _r: httpx.Response(200, json=_answer())))
        settings = load_settings(database_url=url)
        runner = JobRunner(settings, sessions, client, None, worker_id="bench", sleep=lambda _s: None)
        outcomes = {runner.run(job_id) for job_id in ids}
        assert outcomes == {"succeeded"}, outcomes
        return
    if mode == "hot":
        from domain.storage.pg_hot_path import HotPath  # type: ignore[import-not-found,unused-ignore]

        hot = HotPath(engine, size=4)
        for job_id in ids:
            claim = hot.claim(job_id, owner="bench", lease_seconds=60)
            assert claim is not None
            attempt = AttemptRecord(
                number=claim.attempt, outcome=AttemptOutcome.succeeded, finished_at=utcnow()
            )
            answer = _answer()
            stored = hot.complete(
                claim, result=answer, usage=answer["usage"], columns=columns, attempt=attempt
            )
            assert stored is not None
        return
    if mode == "direct":
        from domain.jobs import statements  # type: ignore[attr-defined,unused-ignore]
        from domain.storage.direct import DirectStatement  # type: ignore[import-not-found,unused-ignore]

        claim_direct = DirectStatement(statements.CLAIM, engine)
        complete_direct = DirectStatement(statements.COMPLETE_AND_LOG, engine)
        for job_id in ids:
            values = repository.claim_values(job_id, owner="bench", lease_seconds=60)
            claimed = repository.claim_from_row(values, claim_direct.fetch_one(values))
            answer = _answer()
            params = repository.complete_values(
                claimed, result=answer, usage=answer["usage"], columns=columns, limiter_wait_ms=0
            )
            row = complete_direct.fetch_one({**params, **repository.log_values(succeeded(claimed.attempt))})
            assert row is not None
        return
    from domain.storage.sessions import autocommit, connection_scope  # type: ignore[attr-defined,unused-ignore]

    bare = autocommit(engine)
    for job_id in ids:
        with connection_scope(bare) as connection:
            claimed = repository.claim(connection, job_id, owner="bench", lease_seconds=60)
        assert claimed is not None
        attempt = AttemptRecord(
            number=claimed.attempt, outcome=AttemptOutcome.succeeded, finished_at=utcnow()
        )
        answer = _answer()
        with connection_scope(bare) as connection:
            done = repository.complete(
                connection, claimed, result=answer, usage=answer["usage"], columns=columns, attempt=attempt
            )
        assert done is not None


def _instructions(mode: str, url: str, ids: list[str], tree: str | None = None) -> int:
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
        json.dump(ids, handle)
    try:
        command = [
            "valgrind",
            "--tool=callgrind",
            "--callgrind-out-file=/dev/null",
            sys.executable,
            str(Path(__file__).resolve()),
            "--child",
            mode,
            url,
            handle.name,
        ]
        root = tree or str(Path(__file__).resolve().parent.parent)
        env = {**os.environ, "PYTHONPATH": root}
        done = subprocess.run(command, capture_output=True, text=True, check=False, env=env, cwd=root)
        if done.returncode != 0:
            raise RuntimeError(f"{mode}: callgrind run failed:\n{done.stderr[-3000:]}")
        found = _COLLECTED.search(done.stderr)
        if found is None:
            raise RuntimeError(f"{mode}: no instruction count in callgrind's output")
        return int(found.group(1))
    finally:
        Path(handle.name).unlink()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, nargs=2, default=[20, 120], metavar=("FEW", "MANY"))
    parser.add_argument("--modes", nargs="+", default=None, choices=["sqlalchemy", "direct", "runner", "hot"])
    parser.add_argument("--server", default=SERVER)
    parser.add_argument(
        "--hot-tree", help="a source tree that still has domain/storage/pg_hot_path.py, to measure it"
    )
    parser.add_argument("--child", nargs=3, metavar=("MODE", "URL", "IDS"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        mode, url, path = args.child
        _child(mode, url, json.loads(Path(path).read_text()))
        return 0
    modes = args.modes or ["sqlalchemy", "direct", "runner"]
    has_hot = args.hot_tree or importlib.util.find_spec("domain.storage.pg_hot_path") is not None
    if args.modes is None and has_hot:
        modes.insert(0, "hot")
    few, many = args.jobs
    per_job: dict[str, float] = {}
    with _database(args.server) as url:
        for mode in modes:
            tree = args.hot_tree if mode == "hot" else None
            counts = [_instructions(mode, url, _insert_jobs(url, size), tree) for size in (few, many)]
            per_job[mode] = (counts[1] - counts[0]) / (many - few)
            print(f"{mode:>10}: {per_job[mode] / 1e6:8.3f} M instructions per job", flush=True)
    for fast in ("direct", "hot"):
        if fast in per_job and "sqlalchemy" in per_job:
            saved = per_job["sqlalchemy"] - per_job[fast]
            line = f"{fast} saves {saved / 1e6:.3f} M instructions per job over sqlalchemy"
            if "runner" in per_job and "direct" in per_job:
                # the runner runs the direct path: on sqlalchemy's, it would cost what direct saves more
                runner = per_job["runner"] + per_job["sqlalchemy"] - per_job["direct"]
                line += f", {saved / runner:.1%} of a runner's job on sqlalchemy ({runner / 1e6:.3f} M)"
            print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
