"""A batch row as OpenAI's Batch object: every field present, timestamps in unix seconds.

While a batch runs, ``request_counts`` and ``usage`` are live figures from its jobs (``Tally``); once
it is finalized they are the figures stored with it.
"""

from __future__ import annotations

from domain.batches.repository import Tally
from domain.batches.schemas import (
    BatchError,
    BatchErrors,
    BatchOut,
    BatchStatus,
    BatchUsage,
    RequestCounts,
    unix,
)
from domain.jobs.execution import ExecutionMode
from domain.storage.models import Batch


def batch_out(batch: Batch, live: Tally | None = None) -> BatchOut:
    """``live`` is the batch's job tally while it runs; None uses the stored figures."""
    if live is not None:
        counts = RequestCounts(total=batch.request_total, completed=live.succeeded, failed=live.failed)
        usage = BatchUsage.model_validate(live.usage())
    else:
        counts = RequestCounts(
            total=batch.request_total, completed=batch.request_completed, failed=batch.request_failed
        )
        usage = BatchUsage.model_validate(batch.usage or {})
    errors = (
        BatchErrors(data=[BatchError.model_validate(item) for item in batch.errors]) if batch.errors else None
    )
    return BatchOut(
        id=batch.id,
        endpoint=batch.endpoint,
        model=batch.model,
        errors=errors,
        input_file_id=batch.input_file_id,
        completion_window=batch.completion_window,
        status=BatchStatus(batch.status),
        output_file_id=batch.output_file_id,
        error_file_id=batch.error_file_id,
        created_at=unix(batch.created_at) or 0,
        in_progress_at=unix(batch.in_progress_at),
        expires_at=unix(batch.expires_at),
        finalizing_at=unix(batch.finalizing_at),
        completed_at=unix(batch.completed_at),
        failed_at=unix(batch.failed_at),
        expired_at=unix(batch.expired_at),
        cancelling_at=unix(batch.cancelling_at),
        cancelled_at=unix(batch.cancelled_at),
        request_counts=counts,
        usage=usage,
        metadata=batch.meta,
        webhook_url=batch.webhook_url,
        execution=ExecutionMode(batch.execution or ExecutionMode.live.value),
    )


def needs_live_tally(batch: Batch) -> bool:
    """Counts are read from the jobs until the batch's final figures are stored."""
    return batch.status in (
        BatchStatus.in_progress.value,
        BatchStatus.finalizing.value,
        BatchStatus.cancelling.value,
    )
