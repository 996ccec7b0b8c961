"""A job's success and its attempt-log row in one statement, for PostgreSQL.

``repository.complete`` stores a success with a fenced UPDATE and, in the same transaction, logs the
attempt (``domain.jobs.attempts``). On PostgreSQL both fit in one statement: the UPDATE runs in a
data-modifying CTE whose RETURNING feeds the INSERT, so the row is logged exactly when the fenced
write landed, atomically, in one round trip. The statement answers 1 when the write landed, else 0.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import DateTime, Float, Integer, String, Text, bindparam, text
from sqlalchemy.sql.elements import TextClause

from domain.jobs.attempts import MAX_ERROR_CHARS, AttemptRecord
from domain.redaction import redact
from domain.storage.models import JSONType, utcnow

COMPLETE_AND_LOG: TextClause = text(
    """
    WITH done AS (
        UPDATE jobs SET
            status = CASE WHEN cancel_requested_at IS NULL
                          THEN 'succeeded' ELSE 'cancelled' END,
            result = :done_result,
            usage = :done_usage,
            prompt_tokens = :done_prompt_tokens,
            completion_tokens = :done_completion_tokens,
            total_tokens = :done_total_tokens,
            cached_tokens = :done_cached_tokens,
            reasoning_tokens = :done_reasoning_tokens,
            images = :done_images,
            limiter_wait_ms = limiter_wait_ms + :done_wait_ms,
            lease_owner = NULL,
            lease_expires_at = NULL,
            finished_at = :done_at,
            updated_at = :done_at
        WHERE id = :fence_id AND lease_owner = :fence_token AND status = 'running'
        RETURNING id, status
    ), logged AS (
        INSERT INTO job_attempts (job_id, number, started_at, finished_at, outcome, status_code,
                                  error_type, error, wait_before_next_seconds)
        SELECT id, :log_number, :log_started_at, :log_finished_at, :log_outcome, :log_status_code,
               :log_error_type, :log_error, :log_wait FROM done
        ON CONFLICT (job_id, number) DO NOTHING
    )
    SELECT status FROM done
    """
).bindparams(
    bindparam("done_result", type_=JSONType),
    bindparam("done_usage", type_=JSONType),
    *(
        bindparam(f"done_{name}", type_=Integer)
        for name in (
            "prompt_tokens",
            "completion_tokens",
            "total_tokens",
            "cached_tokens",
            "reasoning_tokens",
            "images",
            "wait_ms",
        )
    ),
    bindparam("done_at", type_=DateTime(timezone=True)),
    bindparam("fence_id", type_=String),
    bindparam("fence_token", type_=String),
    bindparam("log_number", type_=Integer),
    bindparam("log_started_at", type_=DateTime(timezone=True)),
    bindparam("log_finished_at", type_=DateTime(timezone=True)),
    bindparam("log_outcome", type_=String),
    bindparam("log_status_code", type_=Integer),
    bindparam("log_error_type", type_=String),
    bindparam("log_error", type_=Text),
    bindparam("log_wait", type_=Float),
)


def log_params(attempt: AttemptRecord) -> dict[str, Any]:
    """The attempt's columns as ``domain.jobs.attempts.record`` writes them."""
    wait = attempt.wait_before_next_seconds
    return {
        "log_number": attempt.number,
        "log_started_at": attempt.started_at,
        "log_finished_at": attempt.finished_at or utcnow(),
        "log_outcome": attempt.outcome.value,
        "log_status_code": attempt.status_code,
        "log_error_type": attempt.error_type,
        "log_error": redact(attempt.error)[:MAX_ERROR_CHARS] if attempt.error is not None else None,
        "log_wait": round(wait, 3) if wait is not None else None,
    }
