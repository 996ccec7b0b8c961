"""Submissions during a polling storm: ``POST /v1/jobs`` open loop at ``--rate`` from 32 connections,
alone (the baseline) and while ``--pollers`` connections each poll ``GET /v1/jobs/{id}`` ``--polls``
times a second, on the same one API process (PostgreSQL, default settings), rounds alternated.

    python -m bench.polling_storm [--pollers 1000] [--polls 5] [--rate 100] [--seconds 5] [--rounds 2]

Per round: the submissions accepted, refused and their p50/p99, and the polls answered 200, refused
503, and failed. Both loads run on one uvloop client process.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
from typing import Any

import httpx
import uvloop

from bench.harness import machine, save
from bench.isolated import private_postgres, private_redis
from bench.overload import LOGS, _payload, _start
from bench.overload_client import Outcome, _open_loop


def _poll(port: int, job_id: str) -> bytes:
    return f"GET /v1/jobs/{job_id} HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\n\r\n".encode()


def _summary(outcome: Outcome, ok: int) -> dict[str, Any]:
    return {
        "answered": outcome.count(ok),
        "refused": outcome.count(503),
        "failed": outcome.failed,
        "p50_ms": round(outcome.percentile(ok, 0.5) * 1000, 1),
        "p99_ms": round(outcome.percentile(ok, 0.99) * 1000, 1),
        "seconds": round(outcome.seconds, 2),
    }


def one_round(pg: Any, redis_server: Any, args: argparse.Namespace, storm: bool, tag: str) -> dict[str, Any]:
    context, stack = _start(pg, redis_server, LOGS / f"storm-{tag}-{storm}", 1)
    try:
        port = int(stack.api_url.rsplit(":", 1)[1])
        submit = _payload(port)
        with httpx.Client(base_url=stack.api_url) as client:
            job_id = client.post("/v1/jobs", json=json.loads(submit.split(b"\r\n\r\n", 1)[1])).json()["id"]
        count = int(args.rate * args.seconds)

        async def both() -> tuple[Outcome, Outcome | None]:
            posts = _open_loop(port, submit, args.rate, count, 32, 30.0)
            if not storm:
                return await posts, None
            poll_rate = args.pollers * args.polls
            polls = _open_loop(
                port, _poll(port, job_id), poll_rate, int(poll_rate * args.seconds), args.pollers, 30.0
            )
            done = await asyncio.gather(posts, polls)
            return done[0], done[1]

        posts, polls = uvloop.run(both())
        found: dict[str, Any] = {"storm": storm, "submissions": _summary(posts, 202)}
        if polls is not None:
            found["polls"] = _summary(polls, 200)
        return found
    finally:
        context.__exit__(None, None, None)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pollers", type=int, default=1000)
    parser.add_argument("--polls", type=float, default=5.0, help="polls a second per poller")
    parser.add_argument("--rate", type=float, default=100.0, help="submissions a second")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args(argv)
    rounds: list[dict[str, Any]] = []
    with private_postgres() as pg, private_redis(LOGS) as redis_server:
        for index in range(args.rounds):
            for storm in (False, True):
                found = one_round(pg, redis_server, args, storm, str(index))
                print(json.dumps(found), flush=True)
                rounds.append(found)
    record: dict[str, Any] = {"args": vars(args), "rounds": rounds}
    for storm in (False, True):
        picked = [r["submissions"] for r in rounds if r["storm"] is storm]
        record["storm" if storm else "alone"] = {
            key: statistics.median(float(p[key]) for p in picked)
            for key in ("answered", "refused", "p50_ms", "p99_ms")
        }
        print("storm" if storm else "alone", json.dumps(record["storm" if storm else "alone"]))
    print(f"machine: {machine()}")
    print("saved", save("polling_storm", record))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
