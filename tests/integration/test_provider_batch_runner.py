"""Provider batches on SQLite and PostgreSQL, against an in-memory OpenAI Batch API: the state machine
from intent to settlement, crash-resume without a second upload or batch, fallback to live, line
errors, cancellation, and the flush thresholds."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from config.settings import Settings, load_settings
from config.tiers import DEFAULT_TIERS_FILE
from domain.jobs import repository as jobs
from domain.jobs.execution import DEFERRED_OWNER, ExecutionPath
from domain.provider_batches import repository
from domain.provider_batches.states import ProviderBatchState
from domain.storage.models import Job, ProviderBatch, utcnow
from domain.storage.sessions import session_scope
from tests.factories import chat_request, new_job
from tests.support.batches import database_url, retire_tenant, sessions
from tests.support.fake_batch_api import FakeBatchApi, chat_completion
from workers.provider_batch_runner import Notifier, ProviderBatchRunner

pytestmark = pytest.mark.integration

__all__ = ["database_url", "sessions"]
Sessions = sessionmaker[Session]


@dataclass
class Clock:
    now: datetime = field(default_factory=lambda: utcnow() + timedelta(seconds=1))

    def __call__(self) -> datetime:
        return self.now

    def later(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@dataclass
class Heard:
    done: list[str] = field(default_factory=list)
    live: list[str] = field(default_factory=list)
    webhooks: list[str] = field(default_factory=list)


@pytest.fixture
def tenant(sessions: Sessions) -> Iterator[str]:
    name = f"pb-{uuid.uuid4().hex[:8]}"
    _retire_provider_batches(sessions)
    yield name
    retire_tenant(sessions, name)
    _retire_provider_batches(sessions)


def _retire_provider_batches(sessions: Sessions) -> None:
    """Deferred jobs and open provider batches of other tests sharing the database are put away."""
    with session_scope(sessions) as session:
        session.execute(
            update(Job)
            .where(Job.execution_path == "provider_batch", Job.status == "running")
            .values(status="cancelled")
        )
        session.execute(update(ProviderBatch).values(state="done"))


def _settings(database_url: str, redis_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": database_url,
        "redis_url": redis_url,
        "openai_api_key": "sk-test-provider",
        "openai_base_url": "http://provider.test/v1",
        "provider_batch_flush_size": 1000,
        "provider_batch_flush_age_seconds": 0,
        "provider_batch_poll_seconds": 5,
        "provider_batch_poll_max_seconds": 60,
        **overrides,
    }
    return load_settings(**values)


@dataclass
class Rig:
    runner: ProviderBatchRunner
    api: FakeBatchApi
    clock: Clock
    heard: Heard
    sessions: Sessions
    tenant: str

    def defer(self, count: int, *, deadline_hours: float = 48) -> list[str]:
        ids = []
        with session_scope(self.sessions) as session:
            for _ in range(count):
                new = new_job(
                    tenant_id=self.tenant,
                    execution_path=ExecutionPath.provider_batch,
                    deadline_at=utcnow() + timedelta(hours=deadline_hours),
                    webhook_url="https://hooks.example/x",
                )
                job, _ = jobs.create_job(session, new)
                ids.append(job.id)
        return ids

    def job(self, job_id: str) -> Job:
        with session_scope(self.sessions) as session:
            found = session.get(Job, job_id)
            assert found is not None
            session.expunge(found)
            return found

    def row(self, provider_batch_id: str) -> ProviderBatch:
        with session_scope(self.sessions) as session:
            found = session.get(ProviderBatch, provider_batch_id)
            assert found is not None
            session.expunge(found)
            return found

    def tick_later(self, seconds: float = 3600) -> Any:
        self.clock.later(seconds)
        return self.runner.tick()


def _rig(sessions: Sessions, settings: Settings, tenant: str) -> Rig:
    api, clock, heard = FakeBatchApi(), Clock(), Heard()
    runner = ProviderBatchRunner(
        settings,
        sessions,
        httpx.Client(transport=api.transport()),
        notifier=Notifier(
            send_webhook=heard.webhooks.append,
            job_done=lambda job_id, _batch: heard.done.append(job_id),
            jobs_to_live=heard.live.extend,
        ),
        clock=clock,
    )
    return Rig(runner, api, clock, heard, sessions, tenant)


@pytest.fixture
def rig(sessions: Sessions, database_url: str, redis_url: str, tenant: str) -> Rig:
    return _rig(sessions, _settings(database_url, redis_url), tenant)


def test_deferred_jobs_complete_through_one_provider_batch(rig: Rig) -> None:
    ids = rig.defer(3)
    assert rig.job(ids[0]).status == "running" and rig.job(ids[0]).lease_owner == DEFERRED_OWNER
    report = rig.runner.tick()
    assert len(report.opened) == 1 and rig.api.uploads == 1 and rig.api.creates == 1
    (remote_id,) = rig.api.batches
    lines = rig.api.lines(remote_id)
    assert sorted(line["custom_id"] for line in lines) == sorted(ids)
    assert {line["url"] for line in lines} == {"/v1/chat/completions"}
    assert rig.api.batches[remote_id]["metadata"] == {"batchery_provider_batch": report.opened[0]}
    assert rig.runner.tick().advanced == {}  # not due yet: polled with backoff
    rig.tick_later()
    assert rig.row(report.opened[0]).remote_status == "validating"
    rig.api.finish(remote_id)
    rig.tick_later()
    for job_id in ids:
        job = rig.job(job_id)
        assert (job.status, job.execution_path, job.provider_batch_id) == (
            "succeeded",
            "provider_batch",
            report.opened[0],
        )
        assert job.result is not None and job.result["id"] == f"chatcmpl-{job_id}"
        assert (job.prompt_tokens, job.completion_tokens, job.total_tokens) == (10, 4, 14)
        assert job.lease_owner is None and job.finished_at is not None
    assert sorted(rig.heard.done) == sorted(ids) and len(rig.heard.webhooks) == 3
    assert rig.row(report.opened[0]).state == ProviderBatchState.done
    rig.tick_later()
    assert len(rig.heard.done) == 3  # settled once


def test_an_upload_whose_answer_was_lost_is_found_in_the_file_list_not_sent_again(rig: Rig) -> None:
    ids = rig.defer(2)
    rig.api.lose_next_upload_answer = True
    (opened,) = rig.runner.tick().opened
    assert rig.api.uploads == 1 and rig.row(opened).state == "pending"
    rig.api.lose_next_create_answer = True
    rig.tick_later()
    assert rig.api.uploads == 1 and rig.row(opened).state == "uploaded"
    rig.tick_later()
    assert rig.api.uploads == 1 and rig.api.creates == 1 and rig.row(opened).state == "submitted"
    rig.api.finish(next(iter(rig.api.batches)))
    rig.tick_later()
    assert [rig.job(job_id).status for job_id in ids] == ["succeeded", "succeeded"]


def test_a_dead_workers_provider_batch_is_resumed_after_its_lease_without_a_second_upload(rig: Rig) -> None:
    ids = rig.defer(2)
    with session_scope(rig.sessions) as session:  # the intent, as a flush writes it
        from domain.provider_batches.grouping import FlushRule

        (group,) = repository.waiting_groups(session, rig.runner.settings)
        made = repository.open_intent(session, group.key, FlushRule(), now=rig.clock())
    assert made is not None and made[1] == 2
    opened = made[0]
    with session_scope(rig.sessions) as session:  # a worker takes it, uploads, and dies
        assert repository.take_lease(session, opened, now=rig.clock(), seconds=30)
        repository.advance(session, opened, ProviderBatchState.pending, polls=1)
    held = [rig.job(job_id) for job_id in ids]
    from domain.provider_batches.lines import input_line

    rig.api.files["file-dead"] = (
        rig.row(opened).filename,
        b"".join(input_line(j.id, "/v1/chat/completions", j.request) for j in held),
    )
    assert rig.runner.advance(opened) == "skipped"  # its lease is live
    rig.clock.later(31)
    assert rig.runner.advance(opened) == "submitted"
    assert rig.api.uploads == 0 and rig.row(opened).input_file_id == "file-dead"
    (remote_id,) = rig.api.batches
    rig.api.finish(remote_id)
    rig.tick_later()
    assert [rig.job(job_id).status for job_id in ids] == ["succeeded", "succeeded"]


def test_an_expired_provider_batch_hands_its_unanswered_jobs_to_live_execution(rig: Rig) -> None:
    ids = rig.defer(4)
    rig.runner.tick()
    (remote_id,) = rig.api.batches
    answered = set(ids[:2])
    rig.api.finish(
        remote_id,
        lambda line: chat_completion(line) if line["custom_id"] in answered else None,
        status="expired",
    )
    rig.tick_later()
    for job_id in ids[:2]:
        assert rig.job(job_id).status == "succeeded"
    for job_id in ids[2:]:
        job = rig.job(job_id)
        assert (job.status, job.execution_path, job.dispatched_at, job.lease_owner) == (
            "queued",
            "live",
            None,
            None,
        )
    assert sorted(rig.heard.live) == sorted(ids[2:])


def test_line_errors_fail_or_go_live_by_kind_and_deadline(rig: Rig) -> None:
    bad, busy = rig.defer(2)
    (late,) = rig.defer(1, deadline_hours=0.05)  # 3 minutes left: under the 10 minute live margin
    answers = {
        bad: (
            400,
            {"error": {"message": "bad request", "type": "invalid_request_error", "code": "invalid_value"}},
        ),
        busy: (500, {"error": {"message": "oops", "type": "server_error"}}),
        late: (429, {"error": {"message": "slow down", "type": "rate_limit_exceeded"}}),
    }
    rig.runner.tick()
    rig.api.finish(next(iter(rig.api.batches)), lambda line: answers[line["custom_id"]])
    rig.clock.later(60)
    rig.runner.tick()
    failed = rig.job(bad)
    assert (failed.status, failed.error_type, failed.error_status, failed.error_message) == (
        "failed",
        "invalid_value",
        400,
        "bad request",
    )
    assert rig.job(busy).status == "queued" and rig.job(busy).execution_path == "live"
    assert rig.job(late).status == "failed" and rig.job(late).error_status == 429


def test_cancelling_every_job_cancels_the_provider_batch(rig: Rig) -> None:
    ids = rig.defer(3)
    rig.runner.tick()
    (remote_id,) = rig.api.batches
    for job_id in ids:
        with session_scope(rig.sessions) as session:
            jobs.cancel_job(session, job_id, tenant_id=rig.tenant)
    rig.tick_later()
    assert rig.api.cancels == 1
    first = ids[0]
    rig.api.finish(
        remote_id,
        lambda line: chat_completion(line) if line["custom_id"] == first else None,
        status="cancelled",
    )
    rig.tick_later()
    assert [rig.job(job_id).status for job_id in ids] == ["cancelled"] * 3
    assert rig.job(first).result is not None  # its call ran: the result is kept, and it is billed
    assert rig.job(first).total_tokens == 14


def test_a_job_cancelled_while_waiting_ends_without_reaching_the_provider(
    sessions: Sessions, database_url: str, redis_url: str, tenant: str
) -> None:
    settings = _settings(
        database_url, redis_url, provider_batch_flush_size=3, provider_batch_flush_age_seconds=3600
    )
    rig = _rig(sessions, settings, tenant)
    first, second = rig.defer(2)
    assert rig.runner.tick().opened == []  # 2 of 3, and young
    with session_scope(sessions) as session:
        jobs.cancel_job(session, first, tenant_id=tenant)
    rig.runner.tick()
    assert rig.job(first).status == "cancelled" and rig.heard.done == [first]
    rig.defer(1)
    assert rig.runner.tick().opened == []  # 2 waiting again, under the flush size
    rig.defer(1)
    assert len(rig.runner.tick().opened) == 1
    lines = rig.api.lines(next(iter(rig.api.batches)))
    assert len(lines) == 3 and first not in {line["custom_id"] for line in lines}
    assert rig.job(second).provider_batch_id is not None


def test_a_big_group_is_split_at_the_line_limit(
    sessions: Sessions, database_url: str, redis_url: str, tenant: str
) -> None:
    settings = _settings(database_url, redis_url, provider_batch_max_lines=2)
    rig = _rig(sessions, settings, tenant)
    ids = rig.defer(5)
    assert len(rig.runner.tick().opened) == 3
    with session_scope(sessions) as session:
        holders = session.scalars(select(Job.provider_batch_id).where(Job.id.in_(ids))).all()
    assert sorted(holders.count(holder) for holder in set(holders)) == [1, 2, 2]


def test_a_models_enqueued_token_limit_holds_jobs_back_until_its_provider_batches_end(
    sessions: Sessions, database_url: str, redis_url: str, tenant: str, tmp_path: Path
) -> None:
    tiers = DEFAULT_TIERS_FILE.read_text().replace(
        '[tiers.standard.models."gpt-4o-mini"]\n',
        '[tiers.standard.models."gpt-4o-mini"]\nbatch_queue_tokens = 100\n',
    )
    (tmp_path / "tiers.toml").write_text(tiers)
    rig = _rig(sessions, _settings(database_url, redis_url, tiers_file=tmp_path / "tiers.toml"), tenant)
    ids = rig.defer(5)  # 40 estimated tokens each: two fit in 100
    (first,) = rig.runner.tick().opened
    assert rig.row(first).request_count == 2
    rig.clock.later(120)
    assert rig.runner.flush() == []  # the queue is full: the other three wait
    (remote_id,) = rig.api.batches
    rig.api.finish(remote_id)
    rig.tick_later()  # the first provider batch ends and frees its tokens
    assert [rig.row(opened).request_count for opened in rig.tick_later().opened] == [2]  # the next two go
    with session_scope(sessions) as session:
        held = session.scalars(select(Job.provider_batch_id).where(Job.id.in_(ids))).all()
    assert sum(1 for holder in held if holder is not None) == 4
    assert len(set(held) - {None}) == 2


def test_a_group_whose_requests_fill_the_byte_threshold_is_sent_before_its_age(
    sessions: Sessions, database_url: str, redis_url: str, tenant: str
) -> None:
    settings = _settings(
        database_url, redis_url, provider_batch_flush_age_seconds=3600, provider_batch_flush_bytes=1024
    )
    rig = _rig(sessions, settings, tenant)
    rig.defer(1)
    assert rig.runner.tick().opened == []  # one small request: neither full nor old
    with session_scope(sessions) as session:
        for _ in range(3):
            new = new_job(
                tenant_id=tenant,
                execution_path=ExecutionPath.provider_batch,
                deadline_at=utcnow() + timedelta(hours=48),
                request=chat_request(prompt="x" * 500),
            )
            jobs.create_job(session, new)
        [group] = repository.waiting_groups(session, settings)
    assert group.count == 4 and group.bytes > 1500
    assert len(rig.runner.tick().opened) == 1


def test_a_batch_the_provider_refuses_hands_its_jobs_to_live_execution(rig: Rig) -> None:
    ids = rig.defer(2)
    rig.api.refuse_creates = True
    (opened,) = rig.runner.tick().opened
    row = rig.row(opened)
    assert row.state == "done" and row.error is not None and row.error.startswith("400")
    assert [rig.job(job_id).status for job_id in ids] == ["queued", "queued"]
    assert sorted(rig.heard.live) == sorted(ids)


def test_a_status_batchery_does_not_know_is_polled_again(rig: Rig) -> None:
    ids = rig.defer(1)
    (opened,) = rig.runner.tick().opened
    (remote_id,) = rig.api.batches
    rig.api.batches[remote_id]["status"] = "queued_somewhere"
    rig.tick_later()
    assert rig.row(opened).state == "submitted" and rig.job(ids[0]).status == "running"
    rig.api.finish(remote_id)
    rig.tick_later()
    assert rig.job(ids[0]).status == "succeeded"


def test_a_big_provider_batch_is_settled_in_chunks_each_job_once(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    import workers.provider_batch_runner as runner_module

    monkeypatch.setattr(runner_module, "SETTLE_CHUNK", 2)
    ids = rig.defer(5)
    (opened,) = rig.runner.tick().opened
    rig.api.finish(next(iter(rig.api.batches)))
    report = rig.tick_later()
    assert report.settled == {"complete": 5}
    assert sorted(rig.heard.done) == sorted(ids)
    assert [rig.job(job_id).status for job_id in ids] == ["succeeded"] * 5
    assert rig.row(opened).state == "done"


def test_a_failed_provider_batch_keeps_the_providers_errors_and_its_jobs_run_live(rig: Rig) -> None:
    ids = rig.defer(2)
    (opened,) = rig.runner.tick().opened
    (remote_id,) = rig.api.batches
    rig.api.batches[remote_id]["errors"] = {
        "object": "list",
        "data": [{"code": "token_limit_exceeded", "message": "Enqueued token limit reached"}],
    }
    rig.api.finish(remote_id, lambda _line: None, status="failed")
    rig.tick_later()
    row = rig.row(opened)
    assert row.remote_status == "failed" and row.error is not None and "token_limit_exceeded" in row.error
    assert [rig.job(job_id).status for job_id in ids] == ["queued", "queued"]


def test_a_provider_batch_past_a_jobs_deadline_is_cancelled_and_its_unrun_lines_end(rig: Rig) -> None:
    (short,) = rig.defer(1, deadline_hours=1)
    (long,) = rig.defer(1, deadline_hours=72)
    rig.runner.tick()
    (remote_id,) = rig.api.batches
    with session_scope(rig.sessions) as session:
        held = session.get(Job, short)
        assert held is not None and held.lease_expires_at is not None
        assert held.lease_expires_at > rig.clock() + timedelta(hours=24)  # held past the provider's window
    rig.tick_later(2 * 3600)  # the short job's deadline passed
    assert rig.api.cancels == 1
    rig.api.finish(remote_id, lambda _line: None, status="cancelled")
    rig.tick_later(10)
    late = rig.job(short)
    assert (late.status, late.error_type) == ("failed", "batch_cancelled")
    assert rig.job(long).status == "queued" and rig.job(long).execution_path == "live"
