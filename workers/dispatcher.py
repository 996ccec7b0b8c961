"""The dispatcher: the database holds the backlog, each tier's queue holds a short window of job ids.

One round, per tier, in one transaction (``domain.jobs.dispatch_repository`` has the SQL):

1. re-queue running jobs whose lease expired (their worker died or stalled);
2. re-send queued jobs whose message may be lost: sent longer ago than ``resend_after_seconds``, or
   every one in the window when the broker's epoch marker vanished (Redis restarted empty, FLUSHALL);
3. top the window up to ``window_size(tier.concurrency, dispatch_window_factor)`` ids, choosing by
   priority, then fair shares across tenants and their batches (``domain.tenancy.fair_share``);

then, after the commit, send the ids. An id that cannot be sent goes back to the backlog. A crash
between the commit and the send leaves a job marked sent without a message: step 2 re-sends it.

Rounds run in every worker (a background thread: a full round every ``dispatch_interval_seconds``, and
a round that only tops the windows up soon after jobs finish), in ``batchery dispatcher`` for a
dedicated process, and as beat's periodic ``sweep`` task. Any number of them can run at once:
PostgreSQL's per-tier advisory lock and ``SKIP LOCKED`` keep them from sending a job twice, and a
duplicate message is harmless anyway (the claim admits one worker).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import redis
from celery import Celery
from redis.exceptions import RedisError
from sqlalchemy.orm import Session, sessionmaker

from config.settings import Settings
from domain.errors import Unavailable
from domain.jobs import dispatch_repository as repo
from domain.storage.models import utcnow
from domain.storage.redis_keys import RedisKeys
from domain.storage.sessions import session_scope
from domain.tenancy.fair_share import Candidate, Lane, plan, rotate, window_size
from domain.webhooks import events
from infra.celery_conf import RUN_JOB_TASK, send_many_by_name, task_label

log = logging.getLogger(__name__)

Send = Callable[[Sequence[str], str, Mapping[str, str]], list[str]]
"""``send(job_ids, queue, labels)``: sends every id (shown in Flower by its label), and answers those
the broker may not have."""

MAX_LANES = 64
RECOVERY_LIMIT = 1000


class BrokerSender:
    """Sends a round's ``run_job`` messages by task name, in one round trip; never raises."""

    def __init__(self, app: Celery) -> None:
        self._app = app

    def __call__(self, job_ids: Sequence[str], queue: str, labels: Mapping[str, str]) -> list[str]:
        return send_many_by_name(self._app, RUN_JOB_TASK, [(job_id, queue) for job_id in job_ids], labels)


@dataclass(frozen=True, slots=True)
class TierRound:
    """What one round did for one tier."""

    tier: str
    skipped: bool = False
    requeued: int = 0
    resent: int = 0
    dispatched: int = 0
    unsent: int = 0


class Dispatcher:
    """Keeps each tier's queue topped up from the backlog, and recovers lost messages and leases."""

    def __init__(
        self,
        settings: Settings,
        sessions: sessionmaker[Session],
        send: Send,
        broker: redis.Redis[Any] | None = None,
        *,
        tiers: Sequence[str] | None = None,
        max_lanes: int = MAX_LANES,
    ) -> None:
        self.settings = settings
        self.sessions = sessions
        self.send = send
        self.broker = broker
        self.tiers = list(tiers) if tiers is not None else list(settings.tiers.tiers)
        self.max_lanes = max_lanes
        self._epoch_key = RedisKeys(settings.redis_prefix).broker_epoch()
        self._resend_all: set[str] = set()
        self._rounds = 0
        self._lane_after: dict[str, str] = {}
        self._lock = threading.Lock()

    def run_once(self, *, recover: bool = True) -> list[TierRound]:
        """One round over every tier (rounds of one Dispatcher never overlap). ``recover=False`` only
        tops the windows up: the rounds that follow each finished job skip the recovery steps, which
        the periodic rounds run."""
        with self._lock:
            if recover and self._broker_was_emptied():
                log.warning("the broker lost its state (restart or flush): re-sending every queued id")
                self._resend_all.update(self.tiers)
            self._rounds += 1
            try:
                return [self.dispatch_tier(tier, recover=recover) for tier in self.tiers]
            except Unavailable:
                # a round cut off by the database may have committed ids as sent and not sent them (the
                # COMMIT's answer lost, or the ids not put back): the next full round re-sends the window
                self._resend_all.update(self.tiers)
                raise

    def _broker_was_emptied(self) -> bool:
        """Set the epoch marker if it is missing; True when it was (the first round on a new Redis too)."""
        if self.broker is None:
            return False
        try:
            return bool(self.broker.set(self._epoch_key, uuid.uuid4().hex, nx=True))
        except (RedisError, OSError):
            return False  # nothing can be sent now anyway; the marker is checked again next round

    def dispatch_tier(self, tier: str, *, recover: bool = True) -> TierRound:
        config = self.settings.tiers.tiers[tier]
        window = window_size(config.concurrency, self.settings.dispatch_window_factor)
        resend_all = recover and tier in self._resend_all
        now = utcnow()
        requeued, resent = 0, []
        with session_scope(self.sessions) as session:
            if not repo.try_lock_tier(session, tier):
                return TierRound(tier, skipped=True)
            if recover:
                requeued, cancelled = repo.requeue_expired(session, tier, now=now, limit=RECOVERY_LIMIT)
                for job_id in cancelled:  # their events go out with the webhook sweep
                    events.record_job_event(session, job_id, self.settings)
                cutoff = now if resend_all else now - timedelta(seconds=self.settings.resend_after_seconds)
                resent = repo.resend_stale(session, tier, sent_before=cutoff, now=now, limit=RECOVERY_LIMIT)
            flight = repo.in_flight(session, tier)
            room = window - flight.queued
            chosen = self._choose(session, tier, room, flight.loads) if room > 0 else []
            dispatched = repo.take(session, chosen, now)
            sending = [*resent, *dispatched]
            found = repo.kinds_and_models(session, sending)
        if resend_all:
            self._resend_all.discard(tier)
        labels = {job_id: task_label(job_id, *found[job_id]) for job_id in sending if job_id in found}
        unsent = self.send(sending, config.queue, labels) if sending else []
        if unsent:
            with session_scope(self.sessions) as session:
                repo.mark_unsent(session, unsent)
        if requeued or resent or unsent:
            log.info(
                "dispatch %s: %d requeued (lease expired), %d re-sent, %d sent, %d not sent",
                tier,
                requeued,
                len(resent),
                len(dispatched),
                len(unsent),
            )
        return TierRound(tier, False, requeued, len(resent), len(dispatched), len(unsent))

    def _choose(self, session: Session, tier: str, room: int, loads: dict[str, int]) -> list[str]:
        after = self._lane_after.get(tier, "")
        lanes = repo.backlog_lanes(session, tier, limit=self.max_lanes, after=after)
        if not lanes:
            return []
        self._lane_after[tier] = lanes[-1][0] if len(lanes) >= self.max_lanes else ""

        def fetch(lane: Lane, last: Candidate | None, limit: int) -> list[Candidate]:
            return repo.lane_jobs(session, tier, lane, last, limit)

        return plan(room, rotate(lanes, self._rounds), loads, fetch)


class DispatchPump:
    """Runs dispatcher rounds on a background thread: a full round every ``interval`` seconds, and a
    top-up round soon after ``nudge()`` (at most one per ``min_gap``, so a busy worker's nudges share
    rounds: the window holds enough ids to cover the gap). A database outage makes it back off; nothing
    it meets stops it.

    The backoff is three lines here rather than tenacity's: tenacity retries one call until it succeeds
    or stops, while this loop never stops, mixes its backoff with its own timer and nudges, and must
    not raise; its ``wait_exponential`` would save nothing and hide the one ``wait`` the loop has."""

    def __init__(
        self,
        dispatcher: Callable[[], Dispatcher],
        *,
        interval: float,
        min_gap: float = 0.1,
        top_up_interval: float | None = None,
    ) -> None:
        self._dispatcher = dispatcher
        self.interval = interval
        self.min_gap = min_gap
        # a process of its own is never nudged: it tops the windows up on this timer instead
        self.top_up_interval = top_up_interval
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self.run, name="batchery-dispatch", daemon=True)
            self._thread.start()

    def nudge(self) -> None:
        """Ask for a round soon (after a job finished, or was given back)."""
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    def run(self) -> None:
        """Loop until ``stop()``."""
        backoff = 0.0
        last_full = float("-inf")
        while not self._stop.is_set():
            self._wake.wait(backoff or self.top_up_interval or self.interval)
            self._wake.clear()
            if self._stop.is_set():
                return
            full = time.monotonic() - last_full >= self.interval
            try:
                self._dispatcher().run_once(recover=full)
                backoff = 0.0
                if full:
                    last_full = time.monotonic()
            except Unavailable:
                backoff = min(max(backoff * 2, 0.5), 5.0)
                log.warning("dispatcher: the database is unavailable; next round in %.1fs", backoff)
            except Exception:
                backoff = min(max(backoff * 2, 0.5), 5.0)
                log.exception("dispatcher round failed; next round in %.1fs", backoff)
            time.sleep(self.min_gap)  # nudges that arrive meanwhile share the next round
