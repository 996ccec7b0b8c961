"""Counters of what the simulator served, for ``GET /_stats``, and a short log for ``GET /_requests``.

``GET /_stats`` answers::

    {
      "since": 1700000000.0,             # unix time of start or of the last POST /_stats/reset
      "requests_total": 12,              # calls to the model endpoints, whatever their answer
      "in_flight": 0, "max_in_flight": 4,
      "rate_limited": 2,                 # 429s from the rate limiter (quota and directive 429s excluded)
      "tokens_charged": 5400,            # admission tokens of admitted calls
      "streamed": 3,                     # calls answered with an event stream (stream: true)
      "usage": {"prompt_tokens": 300, "completion_tokens": 120, "total_tokens": 420},
      "images": 1,                       # images generated
      "by_endpoint": {"/v1/chat/completions": 11, "/v1/images/generations": 1},
      "by_status": {"200": 9, "429": 2, "500": 1},
      "by_model": {"gpt-4o-mini": {"requests": 11, "succeeded": 8, "rate_limited": 2, "failed": 1,
                                   "streamed": 3, "tokens_charged": 4400, "prompt_tokens": 280,
                                   "completion_tokens": 100, "total_tokens": 380, "images": 0}}
    }

Batch lines (``simulator.batch_lines``) are counted apart and never in the figures above: ``batch_lines``
is the number of batch input lines answered (success or error) and ``batch`` holds::

      "batch": {"lines": 5, "succeeded": 4, "failed": 1,     # answered lines by outcome
                "not_run": 2,                                # batch_expired and batch_cancelled lines
                "usage": {"prompt_tokens": 80, "completion_tokens": 40, "total_tokens": 120},
                "by_model": {"gpt-4o-mini": {"lines": 5, "succeeded": 4, "failed": 1,
                             "prompt_tokens": 80, "completion_tokens": 40, "total_tokens": 120}},
                "files": 3,                                  # files held now
                "batches": {"validating": 0, "in_progress": 1, "finalizing": 0, "completed": 2,
                            "failed": 0, "expired": 0, "cancelling": 0, "cancelled": 0}}

``files`` and ``batches`` describe what the simulator holds now, so a reset does not zero them.

Usage sums add what success bodies reported: chat prompt/completion tokens, Responses input/output
tokens and GPT-image input/output tokens; a streamed call adds its usage once its stream completed (not
when it was cut by ``stream_error_after``, a malformed stream or a client going away).
``POST /_stats/reset`` zeroes everything but the calls in flight.
"""

from __future__ import annotations

import time
from collections import Counter, deque
from dataclasses import asdict, dataclass
from typing import Any

from simulator.calls import Usage

_RECENT = 1000


@dataclass(slots=True)
class ModelCounters:
    """Counters of one model."""

    requests: int = 0
    succeeded: int = 0
    rate_limited: int = 0
    failed: int = 0
    streamed: int = 0
    tokens_charged: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    images: int = 0

    def as_json(self) -> dict[str, int]:
        values = asdict(self)
        values["total_tokens"] = self.prompt_tokens + self.completion_tokens
        return values


@dataclass(slots=True)
class BatchLineCounters:
    """Counters of the batch lines of one model (or of all)."""

    lines: int = 0
    succeeded: int = 0
    failed: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def add(self, succeeded: bool, usage: Usage | None) -> None:
        self.lines += 1
        if succeeded:
            self.succeeded += 1
        else:
            self.failed += 1
        if usage is not None:
            self.prompt_tokens += usage.prompt_tokens
            self.completion_tokens += usage.completion_tokens

    def as_json(self) -> dict[str, int]:
        values = asdict(self)
        values["total_tokens"] = self.prompt_tokens + self.completion_tokens
        return values


@dataclass(frozen=True, slots=True)
class CallRecord:
    """One finished call to a model endpoint."""

    request_id: str
    endpoint: str
    model: str
    status: int
    user: str | None = None
    client_request_id: str | None = None
    rate_limited: bool = False
    tokens_charged: int = 0
    usage: Usage | None = None
    streamed: bool = False
    duration_ms: float = 0.0
    path: str = ""
    query: str = ""
    auth: str | None = None
    headers: tuple[tuple[str, str], ...] = ()


class SimulatorStats:
    """Mutable counters; one instance per app, touched only from the event loop."""

    def __init__(self) -> None:
        self.in_flight = 0
        self.reset()

    def reset(self) -> None:
        self.since = time.time()
        self.requests_total = 0
        self.max_in_flight = self.in_flight
        self.rate_limited = 0
        self.tokens_charged = 0
        self.streamed = 0
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.images = 0
        self.by_endpoint: Counter[str] = Counter()
        self.by_status: Counter[int] = Counter()
        self.by_model: dict[str, ModelCounters] = {}
        self.recent: deque[CallRecord] = deque(maxlen=_RECENT)
        self.batch_lines = BatchLineCounters()
        self.batch_not_run = 0
        self.batch_by_model: dict[str, BatchLineCounters] = {}

    def batch_line(self, model: str, succeeded: bool, usage: Usage | None) -> None:
        """Count one answered batch line (kept apart from live calls)."""
        self.batch_lines.add(succeeded, usage)
        self.batch_by_model.setdefault(model, BatchLineCounters()).add(succeeded, usage)

    def started(self) -> None:
        self.in_flight += 1
        if self.in_flight > self.max_in_flight:
            self.max_in_flight = self.in_flight

    def finished(self, record: CallRecord) -> None:
        self.in_flight -= 1
        self.requests_total += 1
        self.by_endpoint[record.endpoint] += 1
        self.by_status[record.status] += 1
        model = self.by_model.get(record.model)
        if model is None:
            model = self.by_model[record.model] = ModelCounters()
        model.requests += 1
        if record.status == 200:
            model.succeeded += 1
        elif record.rate_limited:
            model.rate_limited += 1
            self.rate_limited += 1
        else:
            model.failed += 1
        if record.streamed:
            model.streamed += 1
            self.streamed += 1
        model.tokens_charged += record.tokens_charged
        self.tokens_charged += record.tokens_charged
        usage = record.usage
        if usage is not None:
            model.prompt_tokens += usage.prompt_tokens
            model.completion_tokens += usage.completion_tokens
            model.images += usage.images
            self.prompt_tokens += usage.prompt_tokens
            self.completion_tokens += usage.completion_tokens
            self.images += usage.images
        self.recent.append(record)

    def snapshot(self) -> dict[str, Any]:
        return {
            "since": self.since,
            "requests_total": self.requests_total,
            "in_flight": self.in_flight,
            "max_in_flight": self.max_in_flight,
            "rate_limited": self.rate_limited,
            "tokens_charged": self.tokens_charged,
            "streamed": self.streamed,
            "usage": {
                "prompt_tokens": self.prompt_tokens,
                "completion_tokens": self.completion_tokens,
                "total_tokens": self.prompt_tokens + self.completion_tokens,
            },
            "images": self.images,
            "by_endpoint": dict(self.by_endpoint),
            "by_status": {str(status): count for status, count in sorted(self.by_status.items())},
            "by_model": {name: counters.as_json() for name, counters in sorted(self.by_model.items())},
            "batch_lines": self.batch_lines.lines,
            "batch": self._batch_snapshot(),
        }

    def _batch_snapshot(self) -> dict[str, Any]:
        totals = self.batch_lines.as_json()
        return {
            "lines": totals["lines"],
            "succeeded": totals["succeeded"],
            "failed": totals["failed"],
            "not_run": self.batch_not_run,
            "usage": {
                "prompt_tokens": totals["prompt_tokens"],
                "completion_tokens": totals["completion_tokens"],
                "total_tokens": totals["total_tokens"],
            },
            "by_model": {name: counters.as_json() for name, counters in sorted(self.batch_by_model.items())},
        }

    def recent_calls(self, limit: int) -> list[dict[str, Any]]:
        """The last ``limit`` calls, newest last."""
        records = list(self.recent)[-limit:] if limit > 0 else []
        return [_record_json(record) for record in records]


def _record_json(record: CallRecord) -> dict[str, Any]:
    usage = record.usage
    return {
        "request_id": record.request_id,
        "client_request_id": record.client_request_id,
        "endpoint": record.endpoint,
        "path": record.path,
        "query": record.query,
        "auth": record.auth,
        "headers": dict(record.headers),
        "model": record.model,
        "user": record.user,
        "status": record.status,
        "rate_limited": record.rate_limited,
        "tokens_charged": record.tokens_charged,
        "streamed": record.streamed,
        "prompt_tokens": usage.prompt_tokens if usage else 0,
        "completion_tokens": usage.completion_tokens if usage else 0,
        "images": usage.images if usage else 0,
        "duration_ms": round(record.duration_ms, 3),
    }
