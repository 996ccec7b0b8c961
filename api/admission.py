"""ASGI middleware that bounds the requests in flight and refuses the excess quickly (at once, or after a
short wait for a slot): 503 ``overloaded`` with ``Retry-After``, before any route, dependency or
database session runs, so a refused request stores nothing and costs little more than its parsing.
``AdmittingFastAPI`` puts it outside even FastAPI's own layers (its error, telemetry and body-size
middleware), so under a flood a refusal costs the parsing and one canned answer.

Beyond what one process can serve, a request that waits inside the server only comes back too late:
the caller has timed out, retries, and the retry adds to the load. Refusing at once keeps what is
accepted at normal latency, and tells the caller when to come back.

Reads and writes have separate limits (two lanes). A polling storm of ``GET /v1/jobs/{id}`` fills the
read lane and is refused beyond it, while submissions keep their own slots in the write lane; each
lane holds at most its limit of requests on the process's threads, so neither can take every slot
from the other. (A storm beyond what the process can parse still slows both: README, Overload.)
Health probes (``/healthz``, ``/readyz``) and ``/metrics`` are never refused: an
orchestrator must not restart a process for being busy, and the refusals must stay observable.

A drop-in OpenAI call (``api.routes.openai_compat``) holds a write slot while its job is submitted,
then gives it back (``release_admission``) before it waits for the job: the submission is the work,
the wait costs a future on the event loop.

Every refusal is counted in ``batchery_requests_refused_total{lane}`` (``/metrics``, ``batchery top``)
through the app's buffered job counters, so it costs no Redis round trip either.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI
from starlette.types import ASGIApp, Receive, Scope, Send

from domain.metrics import catalog
from domain.metrics.job_counters import JobCounters
from domain.metrics.store import MetricBatch

READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
NEVER_SHED = ("/healthz", "/readyz", "/metrics")
RELEASE_KEY = "batchery.release_admission"
"""Where a request's scope holds the call that gives its slot back: the drop-in OpenAI endpoints call
it once their job is stored, so the calls they then wait on (thousands per process) hold no slot."""
WAITING_PER_SLOT = 8
"""Waiters per slot at most: the room a burst (a client's forty calls at once) waits in."""
MAX_QUEUE_DELAY = 0.1
"""Seconds of work the waiters may hold, at the rate the lane serves when it is full: beyond it a new
request is refused at once, so under sustained overload an accepted request waits about this long,
not as long as a full waiting room takes to drain."""
RATE_WINDOW = 0.5
"""Seconds of each window over which a lane measures its rates (``RateMeter``)."""
REFUSALS_PER_SERVED = 4
"""Refusals a second answered at once, per request a second the lane serves (``served``). Beyond that
pace (callers that retry a refusal at once, ignoring Retry-After) each refusal waits its turn, so
refusing never takes more than a small share of the process from the work it accepted."""
MAX_REFUSAL_DELAY = 0.25
"""Seconds a refusal waits for its turn at most; beyond it, it is answered at once."""


@dataclass(slots=True)
class RateMeter:
    """Events a second: counted in windows of ``RATE_WINDOW`` seconds, each folded into a moving average
    (so one slow window does not swing it). A gap of more than four windows starts a new run: a pause is
    not slowness."""

    per_second: float = 0.0
    """0 until a window has been measured."""
    _since: float = 0.0
    _count: int = 0

    def count(self, now: float) -> None:
        if self._count == 0 or now - self._since > 4 * RATE_WINDOW:
            self._since, self._count = now, 0
        self._count += 1
        elapsed = now - self._since
        if elapsed >= RATE_WINDOW:
            measured = self._count / elapsed
            self.per_second = measured if self.per_second == 0 else 0.5 * self.per_second + 0.5 * measured
            self._since, self._count = now, 0


@dataclass(slots=True)
class AdmissionLane:
    """One kind of request: how many are in flight now, at most ``limit``; up to ``WAITING_PER_SLOT``
    times ``limit`` more may wait ``max_wait`` seconds for a slot (a burst, or a pause of the process
    such as a slow commit, then refuses nobody), and a slot freed goes straight to the oldest waiter.

    Once the lane has measured how fast it serves while full, a request that would wait behind more
    than ``MAX_QUEUE_DELAY`` seconds of that work is refused at once: a burst into an idle lane waits
    (nothing is measured yet, or the queue is short), a sustained overload is refused early and what
    is accepted keeps a short wait."""

    name: str
    limit: int
    max_wait: float
    in_flight: int = 0
    refused: int = 0
    waiters: deque[asyncio.Future[None]] = field(default_factory=deque)
    while_full: RateMeter = field(default_factory=RateMeter)
    """Requests served while others waited: the lane's capacity, which bounds the wait."""
    served: RateMeter = field(default_factory=RateMeter)
    """Requests served, waiters or not: what paces refusals."""
    clock: Callable[[], float] = time.monotonic
    _next_refusal: float = 0.0

    async def enter(self) -> bool:
        """Take a slot (True), or give up at once or after ``max_wait`` (False)."""
        if self.in_flight < self.limit and not self.waiters:
            self.in_flight += 1
            return True
        if self.max_wait <= 0 or len(self.waiters) >= WAITING_PER_SLOT * self.limit:
            return False
        rate = self.while_full.per_second
        if rate > 0 and len(self.waiters) + 1 > rate * MAX_QUEUE_DELAY:
            return False  # the waiters already hold more work than an accepted request should wait for
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.waiters.append(waiter)
        try:
            await asyncio.wait_for(waiter, self.max_wait)
        except TimeoutError:
            return False
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.leave()  # handed a slot just as this request was cancelled: pass it on
            raise
        finally:
            if not waiter.done() or waiter.cancelled():
                self._forget(waiter)
        return True  # the slot was handed over: in_flight already counts it

    def refusal_delay(self) -> float:
        """Seconds this refusal waits before it is answered: 0 while refusals come no faster than
        ``REFUSALS_PER_SERVED`` times the served rate; beyond that they are answered in turn at that
        pace (each one's turn booked here), unless the turn is more than ``MAX_REFUSAL_DELAY`` away.

        Against callers that send again the moment they are refused, the pace bounds the work spent on
        refusals; against callers that honour Retry-After, or offered load that does not depend on how
        fast refusals come back, nothing waits."""
        served_rate = self.served.per_second
        if served_rate <= 0:
            return 0.0
        now = self.clock()
        turn = max(now, self._next_refusal)
        if turn - now > MAX_REFUSAL_DELAY:
            return 0.0
        self._next_refusal = turn + 1 / (REFUSALS_PER_SERVED * served_rate)
        return turn - now

    def leave(self) -> None:
        now = self.clock()
        self.served.count(now)
        if self.waiters:
            self.while_full.count(now)
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self.in_flight -= 1

    def _forget(self, waiter: asyncio.Future[None]) -> None:
        with contextlib.suppress(ValueError):
            self.waiters.remove(waiter)


class AdmissionMiddleware:
    """Admits a request when its lane has room (or gets room within ``max_wait_seconds``), else answers
    503 ``overloaded``.

    The event loop is single-threaded and nothing awaits between a check and its update, so the counts
    need no lock."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_writes: int,
        max_reads: int,
        max_wait_seconds: float = 0.0,
        retry_after_seconds: int = 1,
    ) -> None:
        self.app = app
        self.writes = AdmissionLane("write", max_writes, max_wait_seconds)
        self.reads = AdmissionLane("read", max_reads, max_wait_seconds)
        self.retry_after = str(retry_after_seconds).encode()
        self._refusals = {lane.name: _refusal(lane, self.retry_after) for lane in (self.writes, self.reads)}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or str(scope.get("path", "")).startswith(NEVER_SHED):
            await self.app(scope, receive, send)
            return
        lane = self.reads if scope.get("method") in READ_METHODS else self.writes
        if not await lane.enter():
            lane.refused += 1
            _count_refusal(scope, lane.name)
            delay = lane.refusal_delay()
            if delay > 0:
                await asyncio.sleep(delay)
            await self._refuse(send, lane)
            return
        left = False

        def release() -> None:
            nonlocal left
            if not left:
                left = True
                lane.leave()

        scope[RELEASE_KEY] = release  # a route that then only waits gives its slot back early
        try:
            await self.app(scope, receive, send)
        finally:
            release()

    async def _refuse(self, send: Send, lane: AdmissionLane) -> None:
        start, body = self._refusals[lane.name]
        await send(start)
        await send(body)


def _refusal(lane: AdmissionLane, retry_after: bytes) -> tuple[dict[str, Any], dict[str, Any]]:
    """The two ASGI messages of a lane's refusal, built once: every refusal of the lane is the same."""
    body = json.dumps(
        {
            "error": {
                "code": "overloaded",
                "message": f"the server is at capacity ({lane.limit} {lane.name} requests in flight); "
                "retry after the Retry-After header's seconds",
                "param": None,
                "type": "server_error",
            }
        }
    ).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"retry-after", retry_after),
    ]
    return (
        {"type": "http.response.start", "status": 503, "headers": headers},
        {"type": "http.response.body", "body": body},
    )


class AdmittingFastAPI(FastAPI):
    """A FastAPI application whose outermost layer is admission (``admit``), outside FastAPI's own error,
    telemetry and body-size layers as well as the app's other middleware: a refused request runs none of
    them. Starlette still sets ``scope["app"]`` first, which the refusal count uses."""

    admission_limits: dict[str, Any] | None = None

    def admit(
        self, *, max_writes: int, max_reads: int, max_wait_seconds: float, retry_after_seconds: int
    ) -> None:
        self.admission_limits = {
            "max_writes": max_writes,
            "max_reads": max_reads,
            "max_wait_seconds": max_wait_seconds,
            "retry_after_seconds": retry_after_seconds,
        }

    def build_middleware_stack(self) -> ASGIApp:
        stack = super().build_middleware_stack()
        if self.admission_limits is None:
            return stack
        return AdmissionMiddleware(stack, **self.admission_limits)


def _count_refusal(scope: Scope, lane: str) -> None:
    """Add one refusal to the app's buffered counters (made here when no submission made them yet), which
    ``/metrics`` flushes before it answers and shutdown flushes last."""
    app = scope.get("app")
    state = getattr(app, "state", None)
    if state is None or not hasattr(state, "redis"):
        return  # the app has not started: nothing to count into
    counters: JobCounters | None = getattr(state, "job_counters", None)
    if counters is None:
        counters = JobCounters(state.redis, state.settings, buffered=True)
        state.job_counters = counters
    batch = MetricBatch()
    batch.count(catalog.REQUESTS_REFUSED, (lane,))
    batch.add_window(catalog.REFUSALS_WINDOW_TIER, lane, "refused")
    counters.store.write(batch, now=0.0)


def release_admission(scope: Scope) -> None:
    """Give the request's admission slot back now (it would be at the end of the response)."""
    release = scope.get(RELEASE_KEY)
    if callable(release):
        release()
