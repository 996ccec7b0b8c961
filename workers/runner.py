"""Running one job: claim the lease, wait for the limiter, call the upstream, retry what can succeed
later, and store the outcome. The Celery task in ``workers.tasks`` only calls ``JobRunner.run``.

Every database write after the claim is fenced by the claim's token (``domain.jobs.repository``), so a
worker that lost its lease cannot overwrite a newer attempt. While the run lasts, the process's
heartbeat renews the lease (``domain.leases.keeper``, ``workers.heartbeat``); a run whose lease a
renewal found gone stores nothing.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any, TypeVar, cast

import httpx
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker
from tenacity import RetryCallState, Retrying, retry_if_exception

from config.settings import Settings
from config.tiers import Tier
from domain.jobs import attempts as attempt_log
from domain.jobs import repository, statements
from domain.jobs.attempts import AttemptOutcome, AttemptRecord
from domain.jobs.repository import Claim
from domain.leases.keeper import LeaseKeeper
from domain.leases.tables import JOB_LEASES
from domain.storage.dialect import dialect_of
from domain.storage.direct import DirectStatement
from domain.storage.models import utcnow
from domain.storage.sessions import autocommit, connection_scope, session_scope
from domain.tokens.estimates import usage_columns
from domain.webhooks import events
from workers import run_metrics, upstream
from workers.db_retry import retry_unavailable
from workers.job_call import Progress, UpstreamCaller, image_count
from workers.limiter import Limiter, LimiterTimeout
from workers.retry import Cancelled, RetryPlan, RetryPolicy, is_retryable
from workers.shutdown import ShuttingDown
from workers.starvation import STARVED
from workers.stream_relay import StreamRelay

log = logging.getLogger(__name__)

TERMINAL_WRITES = (repository.complete, repository.fail, repository.end_cancelled)
# what a fenced write answers: whether it landed (a bool) or the status it stored (None when it did not)
_Written = TypeVar("_Written")
NotifyDone = Callable[[str, Mapping[str, str] | None, Mapping[str, Any] | None], object]
"""``(job id, final attempt's headers, a succeeded job's result)``, once a terminal outcome is stored."""


class LeaseLost(Exception):
    """The job's lease is gone (expired and re-claimed, or a cancel was requested)."""


def _policy_for(tier: Tier) -> RetryPolicy:
    return RetryPolicy(
        max_attempts=tier.max_attempts,
        base_seconds=tier.backoff_base_seconds,
        cap_seconds=tier.backoff_cap_seconds,
        deadline_seconds=tier.deadline_seconds,
    )


class JobRunner:
    """Runs jobs for one worker process."""

    def __init__(
        self,
        settings: Settings,
        sessions: sessionmaker[Session],
        client: httpx.Client,
        limiter: Limiter | None,
        *,
        worker_id: str,
        requeue: Callable[[str, str], object] | None = None,
        notify_webhook: Callable[[str], object] | None = None,
        notify_done: NotifyDone | None = None,
        sleep: Callable[[float], None] = time.sleep,
        max_limiter_wait: float = 30.0,
        stopping: Callable[[], bool] | None = None,
        keeper: LeaseKeeper | None = None,
        clock: Callable[[], float] = time.monotonic,
        relay: StreamRelay | None = None,
    ) -> None:
        self.settings = settings
        self.sessions = sessions
        # the claim is one statement: a bare autocommit connection runs it without a session's
        # bookkeeping or BEGIN and COMMIT
        engine = cast(Engine, sessions.kw["bind"])
        self._autocommit = autocommit(engine)
        # on PostgreSQL, the claim and a plain completion run on the driver (``domain.storage.direct``)
        direct = dialect_of(engine).direct_statements
        self._claim_direct = DirectStatement(statements.CLAIM, engine) if direct else None
        self._complete_direct = DirectStatement(statements.COMPLETE_AND_LOG, engine) if direct else None
        self.caller = UpstreamCaller(
            settings,
            client,
            limiter,
            sleep=sleep,
            max_limiter_wait=max_limiter_wait,
            stopping=stopping,
            relay=relay,
        )
        self.worker_id = worker_id
        self.requeue = requeue
        self.notify_webhook = notify_webhook
        self.notify_done = notify_done  # once a terminal outcome is stored
        self.sleep = sleep
        self.clock = clock
        self.keeper = keeper if keeper is not None else LeaseKeeper()
        self._last = threading.local()

    def close(self) -> None:
        """Nothing of its own to close: the session factory's engine is the caller's."""

    def last_claim(self) -> Claim | None:
        """The claim of this thread's latest ``run`` (None when it claimed nothing)."""
        claim: Claim | None = getattr(self._last, "claim", None)
        return claim

    def run(self, job_id: str) -> str:
        """Run the job if it can be claimed; returns the outcome for logs and tests."""
        self._last.claim = None
        # a process whose heartbeat cannot renew its leases takes no new job until it can again
        try:
            renewing = self.keeper.wait_until_renewing(self.settings.db_retry_seconds, self.sleep)
        except ShuttingDown:
            renewing = False
        if not renewing:
            log.warning("job left queued: leases cannot be renewed", extra={"job_id": job_id})
            return "skipped"
        token = repository.new_lease_token(self.worker_id)  # the same for every try of this claim
        claim = retry_unavailable(
            lambda: self._claim(job_id, token),
            deadline=self.settings.db_retry_seconds,
            what="claiming a job",
            sleep=self.sleep,
        )
        self._last.claim = claim
        if claim is None:
            log.info(
                "job skipped: already claimed or finished", extra={"job_id": job_id, "outcome": "skipped"}
            )
            return "skipped"
        with self.keeper.holding(JOB_LEASES, claim.token):
            return self._run_claimed(claim)

    def _run_claimed(self, claim: Claim) -> str:
        run_metrics.note_claim(claim)
        tier = self.settings.tiers.tiers[claim.tier]
        if claim.attempt > tier.max_attempts:
            stored = self._write(
                repository.fail,
                claim,
                error_type="max_attempts_exceeded",
                message=f"the job was started {claim.attempt - 1} times without finishing",
            )
            return stored.value if stored is not None else "lease_lost"
        return self._attempt_all(claim, tier)

    def _claim(self, job_id: str, token: str) -> Claim | None:
        """Claim the job; an earlier attempt that left no log row is logged as lost (its worker died)."""
        lease = self.settings.lease_seconds
        if self._claim_direct is not None:
            values = repository.claim_values(job_id, owner=self.worker_id, lease_seconds=lease, token=token)
            row = self._claim_direct.fetch_one(values)
            claim = repository.claim_from_row(values, row) if row is not None else None
            if claim is not None and claim.attempt > 1:
                with connection_scope(self._autocommit) as connection:
                    attempt_log.record_lost_if_missing(connection, job_id, claim.attempt - 1)
            return claim
        with connection_scope(self._autocommit) as connection:
            claim = repository.claim(
                connection, job_id, owner=self.worker_id, lease_seconds=lease, token=token
            )
            if claim is not None and claim.attempt > 1:
                attempt_log.record_lost_if_missing(connection, job_id, claim.attempt - 1)
            return claim

    def _attempt_all(self, claim: Claim, tier: Tier) -> str:
        progress = Progress(started=self.clock())
        plan = RetryPlan(
            _policy_for(tier),
            first_attempt=claim.attempt,
            clock=self.clock,
            sleep=self.sleep,
            cancelled=lambda: self._cancel_requested(claim),
        )
        retrying = Retrying(
            retry=retry_if_exception(is_retryable),
            stop=plan.stop,
            wait=plan.wait,
            sleep=plan.sleep,
            before_sleep=lambda state: self._next_attempt(claim, state, progress),
            reraise=True,
        )
        try:
            response = retrying(self.caller.call, claim, tier, progress)
        except LimiterTimeout as starved:  # back off first, so starved jobs do not spin through the backlog
            STARVED.back_off(starved, sleep=self.sleep, stopping=self.caller.stopping)
            return self._give_back(claim)
        except ShuttingDown:
            return self._give_back(claim)
        except (LeaseLost, Cancelled):
            return self._end_after_lost_lease(claim, progress)
        except upstream.UpstreamError as error:
            return self._store_failure(claim, error, progress)
        columns = usage_columns(claim.kind, response.body.get("usage"), images=image_count(response.body))
        run_metrics.note_usage(columns)
        stored = self._write(
            repository.complete,
            claim,
            result=response.body,
            usage=response.body.get("usage"),
            columns=columns,
            limiter_wait_ms=int(progress.limiter_wait * 1000),
            attempt=self._attempt(
                claim, progress, AttemptOutcome.succeeded, status_code=response.status_code
            ),
        )
        self._announce(claim, stored, response.headers, response.body)
        return stored.value if stored is not None else "lease_lost"

    def _announce(
        self,
        claim: Claim,
        stored: object,
        headers: Mapping[str, str] | None,
        result: Mapping[str, Any] | None = None,
    ) -> None:
        if stored and self.notify_done is not None:
            self.notify_done(claim.job_id, headers, result)

    def _cancel_requested(self, claim: Claim) -> bool:
        """After a backoff: was the job cancelled (or its lease lost) while it waited?"""
        if self.keeper.is_lost(JOB_LEASES, claim.token):
            return True

        def read() -> bool:
            with session_scope(self.sessions) as session:
                return repository.cancel_requested(session, claim)

        return retry_unavailable(read, deadline=self.settings.db_retry_seconds, what="checking a cancel")

    def _next_attempt(self, claim: Claim, state: RetryCallState, progress: Progress) -> None:
        """Before sleeping for a retry: log the attempt and count the next one on the held lease, or stop
        if the lease is gone (or a cancel was requested)."""
        error = state.outcome.exception() if state.outcome else None
        run_metrics.note_retry(error)
        wait = state.next_action.sleep if state.next_action is not None else None
        failed = self._attempt(claim, progress, AttemptOutcome.failed, error=error)
        progress.last_attempt = failed
        retrying = replace(failed, outcome=AttemptOutcome.retrying, wait_before_next_seconds=wait)

        def write() -> None:
            with session_scope(self.sessions) as session:
                if not repository.start_retry(session, claim, lease_seconds=self.settings.lease_seconds):
                    raise LeaseLost()
                attempt_log.record(session, claim.job_id, retrying)

        retry_unavailable(write, deadline=self.settings.db_retry_seconds, what="starting a retry")
        progress.last_attempt = None

    def _attempt(
        self,
        claim: Claim,
        progress: Progress,
        outcome: AttemptOutcome,
        *,
        status_code: int | None = None,
        error: BaseException | None = None,
    ) -> AttemptRecord:
        """The log row of the attempt just made."""
        error_type: str | None = None
        message: str | None = None
        if isinstance(error, upstream.UpstreamError):
            status_code, error_type, message = error.status_code, error.error_type, error.message
        elif error is not None:
            error_type, message = type(error).__name__, str(error)
        return AttemptRecord(
            number=claim.attempt + progress.calls - 1,
            outcome=outcome,
            started_at=progress.call_started,
            finished_at=utcnow(),
            status_code=status_code,
            error_type=error_type,
            error=message,
        )

    def _store_failure(self, claim: Claim, error: upstream.UpstreamError, progress: Progress) -> str:
        stored = self._write(
            repository.fail,
            claim,
            error_type=error.error_type,
            message=error.message,
            status_code=error.status_code,
            body=error.body,
            limiter_wait_ms=int(progress.limiter_wait * 1000),
            attempt=self._attempt(claim, progress, AttemptOutcome.failed, error=error),
        )
        self._announce(claim, stored, error.headers)
        return stored.value if stored is not None else "lease_lost"

    def _give_back(self, claim: Claim) -> str:
        """The limiter's wait is too long to hold a worker slot, or the worker is shutting down, and the
        current attempt has not called the upstream: uncount it and put the job back in the backlog, for
        the dispatcher to send again."""
        released = self._write(repository.release, claim, undo_attempt=True)
        if released and self.requeue is not None:
            self.requeue(claim.job_id, f"tier.{claim.tier}")
        return "requeued"

    def _end_after_lost_lease(self, claim: Claim, progress: Progress) -> str:
        ended = self._write(repository.end_cancelled, claim, attempt=progress.last_attempt)
        self._announce(claim, ended, None)
        return "cancelled" if ended else "lease_lost"

    def _write(
        self,
        operation: Callable[..., _Written],
        claim: Claim,
        *,
        attempt: AttemptRecord | None = None,
        **values: Any,
    ) -> _Written:
        """Run one fenced write (with the attempt's log row, when given). A terminal one also records the
        job's webhook event in the same transaction (an outbox), and the delivery is sent once it has
        committed. A database outage is ridden out (``workers.db_retry``), never stored as a failure.
        A lease the heartbeat found lost stores nothing (the fenced write would be refused anyway)."""
        if self.keeper.is_lost(JOB_LEASES, claim.token):
            log.warning("lease lost: nothing stored", extra={"job_id": claim.job_id, "outcome": "lease_lost"})
            return cast(_Written, None)
        logs_attempt_itself = operation is repository.complete  # in one statement on Postgres
        # a completion with no webhook event to record is one statement: it needs no session
        alone = logs_attempt_itself and not claim.has_webhook

        def write() -> tuple[_Written, str | None]:
            if alone and self._complete_direct is not None and attempt is not None:
                params = {**repository.complete_values(claim, **values), **repository.log_values(attempt)}
                row = self._complete_direct.fetch_one(params)
                return cast(_Written, repository.stored_status(row.status if row is not None else None)), None
            if alone:
                with connection_scope(self._autocommit) as connection:
                    return operation(connection, claim, attempt=attempt, **values), None
            delivery: str | None = None
            with session_scope(self.sessions) as session:
                if logs_attempt_itself:
                    done = operation(session, claim, attempt=attempt, **values)
                else:
                    done = operation(session, claim, **values)
                    if done and attempt is not None:
                        attempt_log.record(session, claim.job_id, attempt)
                if done and operation in TERMINAL_WRITES and claim.has_webhook:
                    delivery = events.record_job_event(session, claim.job_id, self.settings)
            return done, delivery

        done, delivery_id = retry_unavailable(
            write, deadline=self.settings.db_retry_seconds, what=f"storing job {claim.job_id}"
        )
        if delivery_id is not None and self.notify_webhook is not None:
            self.notify_webhook(delivery_id)
        return done
