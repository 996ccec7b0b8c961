"""A job as the API shows it (`GET /v1/jobs/{id}`), built from its row. The API answers with it and
webhook events carry it, so both live in the domain."""

from __future__ import annotations

from domain.jobs.execution import ExecutionPath
from domain.jobs.schemas import JobError, JobOut, JobUsage
from domain.jobs.streaming import stream_mode
from domain.status import JobKind, JobStatus
from domain.storage.models import Job


def job_out(job: Job) -> JobOut:
    error = (
        JobError(type=job.error_type, message=job.error_message or "", status_code=job.error_status)
        if job.error_type
        else None
    )
    finished = job.status == JobStatus.succeeded.value or job.usage is not None
    usage = (
        JobUsage(
            prompt_tokens=job.prompt_tokens,
            completion_tokens=job.completion_tokens,
            total_tokens=job.total_tokens,
            cached_tokens=job.cached_tokens,
            reasoning_tokens=job.reasoning_tokens,
            images=job.images,
        )
        if finished
        else None
    )
    return JobOut(
        id=job.id,
        kind=JobKind(job.kind),
        model=job.model,
        tier=job.tier,
        status=JobStatus(job.status),
        priority=job.priority,
        attempts=job.attempts,
        created_at=job.created_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
        request=job.request,
        result=job.result,
        error=error,
        usage=usage,
        estimated_tokens=job.estimated_tokens,
        limiter_wait_ms=job.limiter_wait_ms,
        metadata=job.meta,
        webhook_url=job.webhook_url,
        batch_id=job.batch_id,
        custom_id=job.custom_id,
        stream=stream_mode(job.kind, job.request),
        execution_path=ExecutionPath(job.execution_path or ExecutionPath.live.value),
        provider_batch_id=job.provider_batch_id,
        deadline_at=job.deadline_at,
    )
