"""Running provider batches: flush waiting groups into intents, then move each one along
(``domain.provider_batches.states``): upload its file, create the batch, poll it with backoff, and
settle its jobs once the provider ends it. ``workers.provider_batch_tasks`` calls ``tick`` from beat.

Each step holds the provider batch's lease (``domain.leases``; the process's heartbeat renews it), so
one run at a time advances a row and a dead worker's row is resumed by another once the lease passes.
A step that already started once (``polls`` above 0 while ``pending`` or ``uploaded``) first looks for
what it may have made before a crash: the file by its name, the batch by its metadata.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import httpx
from sqlalchemy.orm import Session, sessionmaker

from config.settings import Settings
from domain.batches.schemas import TERMINAL as BATCH_TERMINAL
from domain.batches.schemas import BatchStatus
from domain.leases.keeper import LeaseKeeper
from domain.leases.tables import PROVIDER_BATCH_LEASES
from domain.provider_batches import repository
from domain.provider_batches.grouping import FlushRule
from domain.provider_batches.lines import ReadLines, input_line, read_lines
from domain.provider_batches.settle import Settlement, end_waiting_cancels, settle_jobs
from domain.provider_batches.states import METADATA_KEY, ProviderBatchState
from domain.storage.models import ProviderBatch, utcnow
from domain.storage.sessions import session_scope
from domain.tokens.usage_report import as_utc
from workers.provider_batch_client import BatchApiClient
from workers.upstream import UpstreamError

log = logging.getLogger(__name__)

MISSING_CODES = {
    BatchStatus.expired: "batch_expired",
    BatchStatus.failed: "batch_failed",
    BatchStatus.cancelled: "batch_cancelled",
    BatchStatus.completed: "batch_failed",
}
"""Why a job has no line in a provider batch that ended with this status."""
SETTLE_CHUNK = 1000
"""Jobs settled per transaction: row locks and a transaction's length stay bounded on a 50,000-line batch."""


@dataclass
class TickReport:
    """What one tick did."""

    opened: list[str] = field(default_factory=list)
    advanced: dict[str, str] = field(default_factory=dict)
    settled: dict[str, int] = field(default_factory=dict)


@dataclass
class Notifier:
    """What happens after a settlement commits: webhooks, completion notices, batch finalizations."""

    send_webhook: Callable[[str], object] = lambda _delivery: None
    job_done: Callable[[str, str | None], object] = lambda _job, _batch: None
    jobs_to_live: Callable[[list[str]], object] = lambda _jobs: None
    settled: Callable[[Settlement], object] = lambda _done: None


class ProviderBatchRunner:
    """Flushes, advances and settles provider batches for one worker process."""

    def __init__(
        self,
        settings: Settings,
        sessions: sessionmaker[Session],
        client: httpx.Client,
        *,
        notifier: Notifier | None = None,
        keeper: LeaseKeeper | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.settings = settings
        self.sessions = sessions
        self.client = client
        self.notifier = notifier or Notifier()
        self.keeper = keeper or LeaseKeeper()
        self.clock = clock
        self.rule = FlushRule.from_settings(settings)

    def api(self, provider: str) -> BatchApiClient:
        return BatchApiClient(self.client, self.settings.providers[provider])

    def tick(self) -> TickReport:
        report = TickReport()
        with session_scope(self.sessions) as session:
            self._announce(end_waiting_cancels(session, self.settings), report)
        report.opened = self.flush()
        with session_scope(self.sessions) as session:
            due = repository.due(session, now=self.clock())
        for provider_batch_id in due:
            report.advanced[provider_batch_id] = self.advance(provider_batch_id, report)
        return report

    def flush(self) -> list[str]:
        """Open an intent for every group that is due (several for a group bigger than one file)."""
        opened: list[str] = []
        now = self.clock()
        with session_scope(self.sessions) as session:
            groups = [
                g for g in repository.waiting_groups(session, self.settings) if self.rule.is_due(g, now)
            ]
        for group in groups:
            left = group.count
            limits = self.settings.tiers.limits_for(group.key.model)
            queue_tokens = limits.batch_queue_tokens if limits is not None else None
            while left > 0:
                with session_scope(self.sessions) as session:
                    made = repository.open_intent(
                        session, group.key, self.rule, now=now, queue_tokens=queue_tokens
                    )
                if made is None:
                    break
                opened.append(made[0])
                left -= made[1]
        return opened

    def advance(self, provider_batch_id: str, report: TickReport | None = None) -> str:
        """Take the row's lease and run its steps as far as they go now; answers its state afterwards.
        A process whose heartbeat cannot renew takes no lease (the next tick finds the row due again)."""
        if self.keeper.failing:
            return "skipped"
        now = self.clock()
        with session_scope(self.sessions) as session:
            if not repository.take_lease(
                session, provider_batch_id, now=now, seconds=self.settings.lease_seconds
            ):
                return "skipped"
        next_poll: datetime | None = None
        state = "error"
        with self.keeper.holding(PROVIDER_BATCH_LEASES, provider_batch_id):
            try:
                state, next_poll = self._steps(provider_batch_id, report or TickReport())
            except UpstreamError as error:
                if _refused(error):
                    state, next_poll = self._give_up(provider_batch_id, error, report or TickReport()), None
                else:
                    next_poll = self._backoff(provider_batch_id)
                    log.warning(
                        "provider batch %s: the provider answered %s; trying again later",
                        provider_batch_id,
                        error.status_code or type(error).__name__,
                    )
            finally:
                with session_scope(self.sessions) as session:
                    repository.release(session, provider_batch_id, next_poll_at=next_poll)
        return state

    def _row(self, provider_batch_id: str) -> ProviderBatch:
        with session_scope(self.sessions) as session:
            row = session.get(ProviderBatch, provider_batch_id)
            assert row is not None
            session.expunge(row)
            return row

    def _steps(self, provider_batch_id: str, report: TickReport) -> tuple[str, datetime | None]:
        row = self._row(provider_batch_id)
        if row.state == ProviderBatchState.pending.value:
            if not self._upload(row, report):
                return ProviderBatchState.done.value, None
            row = self._row(provider_batch_id)
        if row.state == ProviderBatchState.uploaded.value:
            self._create(row)
            return ProviderBatchState.submitted.value, self.clock() + self._poll_delay(0)
        if row.state == ProviderBatchState.submitted.value:
            return self._poll(row, report)
        return row.state, None

    def _note_attempt(self, row: ProviderBatch) -> None:
        """Record, before calling the provider, that this step started: a run that resumes it after a
        crash looks for what the first one made before making it again."""
        with session_scope(self.sessions) as session:
            repository.advance(session, row.id, ProviderBatchState(row.state), polls=row.polls + 1)

    def _upload(self, row: ProviderBatch, report: TickReport) -> bool:
        """pending → uploaded. False when no job was left to send (the row is done)."""
        with session_scope(self.sessions) as session:
            held = repository.held_jobs(session, row.id)
            lines = [input_line(job.id, row.endpoint, job.request) for job in held]
        if not lines:
            with session_scope(self.sessions) as session:
                repository.advance(session, row.id, ProviderBatchState.done, finished_at=self.clock())
            return False
        api = self.api(row.provider)
        file_id = api.find_file(row.filename) if row.polls > 0 else None
        if file_id is None:
            self._note_attempt(row)
            file_id = api.upload(row.filename, b"".join(lines))
        with session_scope(self.sessions) as session:
            repository.advance(
                session,
                row.id,
                ProviderBatchState.uploaded,
                input_file_id=file_id,
                request_count=len(lines),
                bytes=sum(len(line) for line in lines),
                polls=0,
            )
        return True

    def _create(self, row: ProviderBatch) -> None:
        """uploaded → submitted."""
        api = self.api(row.provider)
        remote = api.find_batch(METADATA_KEY, row.id) if row.polls > 0 else None
        if remote is None:
            self._note_attempt(row)
            assert row.input_file_id is not None
            remote = api.create_batch(row.input_file_id, row.endpoint, {METADATA_KEY: row.id})
        with session_scope(self.sessions) as session:
            repository.advance(
                session,
                row.id,
                ProviderBatchState.submitted,
                remote_id=str(remote["id"]),
                remote_status=str(remote.get("status") or BatchStatus.validating.value),
                submitted_at=self.clock(),
                polls=0,
            )

    def _poll(self, row: ProviderBatch, report: TickReport) -> tuple[str, datetime | None]:
        api = self.api(row.provider)
        assert row.remote_id is not None
        remote = api.get_batch(row.remote_id)
        status = _remote_status(remote.get("status"))
        if status not in BATCH_TERMINAL:
            if status is not BatchStatus.cancelling and self._should_cancel(row.id):
                remote = api.cancel_batch(row.remote_id)
                status = BatchStatus(str(remote.get("status") or status.value))
            with session_scope(self.sessions) as session:
                repository.advance(
                    session,
                    row.id,
                    ProviderBatchState.submitted,
                    remote_status=status.value,
                    polls=row.polls + 1,
                )
            return ProviderBatchState.submitted.value, self.clock() + self._poll_delay(row.polls + 1)
        output_id, error_id = remote.get("output_file_id"), remote.get("error_file_id")
        with session_scope(self.sessions) as session:
            expected = [job.id for job in repository.held_jobs(session, row.id)]
        read = ReadLines()
        for file_id in (output_id, error_id):
            if file_id:
                read_lines([api.content(str(file_id))], expected, into=read)
        now = self.clock()
        for _ in range(row.request_count // SETTLE_CHUNK + 2):  # SETTLE_CHUNK jobs a transaction
            with session_scope(self.sessions) as session:
                done = settle_jobs(
                    session,
                    row.id,
                    read,
                    missing_code=MISSING_CODES[status],
                    settings=self.settings,
                    now=now,
                    limit=SETTLE_CHUNK,
                )
            self._announce(done, report)
            if sum(done.counts.values()) < SETTLE_CHUNK:
                break
        with session_scope(self.sessions) as session:
            repository.advance(
                session,
                row.id,
                ProviderBatchState.done,
                remote_status=status.value,
                output_file_id=output_id,
                error_file_id=error_id,
                error=_errors_of(remote),
                finished_at=now,
            )
        return ProviderBatchState.done.value, None

    def _give_up(self, provider_batch_id: str, error: UpstreamError, report: TickReport) -> str:
        """The provider refused the file or the batch for good (a 4xx other than 408, 409 or 429): its
        jobs are settled as if the batch failed, so they run live while their deadline allows."""
        log.warning(
            "provider batch %s refused (%s): its jobs fall back", provider_batch_id, error.status_code
        )
        now = self.clock()
        with session_scope(self.sessions) as session:
            done = settle_jobs(
                session,
                provider_batch_id,
                ReadLines(),
                missing_code="batch_failed",
                settings=self.settings,
                now=now,
            )
            repository.advance(
                session,
                provider_batch_id,
                ProviderBatchState.done,
                error=f"{error.status_code}: {error}"[:2000],
                finished_at=now,
            )
        self._announce(done, report)
        return ProviderBatchState.done.value

    def _should_cancel(self, provider_batch_id: str) -> bool:
        """Cancel a running provider batch once every job it holds was told to cancel, or once a job's
        deadline passed (its lines not run yet then run live when their own deadline allows)."""
        with session_scope(self.sessions) as session:
            held, cancelled, earliest = repository.held_summary(session, provider_batch_id)
        if earliest is not None and as_utc(earliest) <= self.clock():
            log.warning("provider batch %s: a job's deadline passed; cancelling it", provider_batch_id)
            return True
        return held > 0 and cancelled == held

    def _announce(self, done: Settlement, report: TickReport) -> None:
        for what, count in done.counts.items():
            report.settled[what] = report.settled.get(what, 0) + count
        for delivery in done.deliveries:
            self.notifier.send_webhook(delivery)
        for job_id, batch_id in done.ended.items():
            self.notifier.job_done(job_id, batch_id)
        if done.live:
            self.notifier.jobs_to_live(done.live)
        if done.jobs:
            self.notifier.settled(done)

    def _poll_delay(self, polls: int) -> timedelta:
        seconds = self.settings.provider_batch_poll_seconds * 2 ** min(polls, 16)
        return timedelta(seconds=min(seconds, self.settings.provider_batch_poll_max_seconds))

    def _backoff(self, provider_batch_id: str) -> datetime:
        with session_scope(self.sessions) as session:
            row = session.get(ProviderBatch, provider_batch_id)
            polls = row.polls if row is not None else 0
        return self.clock() + self._poll_delay(polls)


def _refused(error: UpstreamError) -> bool:
    status = error.status_code
    return status is not None and 400 <= status < 500 and status not in (408, 409, 429)


def _remote_status(value: object) -> BatchStatus:
    """The provider's status; one batchery does not know is taken as still running."""
    try:
        return BatchStatus(str(value))
    except ValueError:
        return BatchStatus.in_progress


def _errors_of(remote: dict[str, object]) -> str | None:
    """The provider's own errors of a batch (a failed one lists why), kept for the operator."""
    errors = remote.get("errors")
    return json.dumps(errors)[:2000] if errors else None
