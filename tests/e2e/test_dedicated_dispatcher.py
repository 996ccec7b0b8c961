"""Workers started with ``--no-dispatch`` run no dispatcher rounds: a ``batchery dispatcher`` process
fills the tier queues alone. With it stopped, the backlog beyond what the API sent straight away stays
in the database, undispatched, while the worker idles; started again, it drains the rest."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from testbed.processes import wait_for
from testbed.services import private_redis_db
from tests.factories import chat_request
from tests.support.job_rows import migrated_database, query, status_counts, wait_until_finished
from tests.support.stack import Stack, running_stack
from tests.support.tiers_file import write_tiers

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

TIERS = {"standard": {"concurrency": 4, "timeout_seconds": 10, "max_attempts": 3}}  # a window of 8 ids


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp: Path = tmp_path_factory.mktemp("dedicated-dispatcher")
    tiers = write_tiers(tmp / "tiers.toml", TIERS, {"gpt-4o-mini": "standard"})
    sim = ("--no-limits", "--latency", "fixed:20")
    with migrated_database() as database, private_redis_db() as redis_url:
        with running_stack(
            tmp,
            database,
            redis_url,
            sim_args=sim,
            worker_args=("--concurrency", "4", "--no-dispatch"),
            extra_env={"BATCHERY_TIERS_FILE": str(tiers)},
            dispatcher=True,
        ) as s:
            s.env["DATABASE_URL"] = database
            yield s


def _submit(api: httpx.Client, count: int, label: str) -> list[str]:
    jobs = [{"kind": "chat", "request": chat_request(prompt=f"{label} {i}")} for i in range(count)]
    response = api.post("/v1/jobs/bulk", json={"jobs": jobs})
    assert response.status_code == 202, response.text
    return [str(item["id"]) for item in response.json()["data"]]


def test_only_the_dedicated_dispatcher_fills_the_queues(stack: Stack) -> None:
    database = stack.env["DATABASE_URL"]
    with stack.api() as api:
        first = _submit(api, 60, "with dispatcher")  # far beyond the window: the dispatcher sends the rest
        assert wait_until_finished(database, len(first), timeout=90).get("succeeded") == 60

        stack.processes["dispatcher"].stop()
        second = _submit(api, 30, "without dispatcher")
        sent_by_api = query(
            database,
            "SELECT count(*) FROM jobs WHERE id = ANY(:ids) AND dispatched_at IS NOT NULL",
            ids=second,
        )[0][0]
        assert 0 < sent_by_api <= 8  # the fast path sends only into the window's room
        # the worker runs what the API sent, and finishing them would have nudged its own rounds
        wait_for(
            lambda: status_counts(database).get("succeeded", 0) == 60 + sent_by_api,
            timeout=60,
            what="the jobs the API sent",
        )
        undispatched = query(
            database, "SELECT count(*) FROM jobs WHERE status = 'queued' AND dispatched_at IS NULL"
        )[0][0]
        assert undispatched == 30 - sent_by_api

        stack.start_dispatcher()
        assert wait_until_finished(database, 90, timeout=90).get("succeeded") == 90
