"""SQLAlchemy 2.0 tables. The database is the source of truth; Redis only carries job ids."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Float,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

JSONType = JSON().with_variant(JSONB(), "postgresql")
DEFAULT_TENANT = "default"


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp that is always timezone-aware UTC, on PostgreSQL and on SQLite (which stores none)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC) if value is not None else None

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSONType, datetime: UTCDateTime()}


class Job(Base):
    """One upstream call a caller asked for, with its result, usage and history."""

    __tablename__ = "jobs"
    __table_args__ = (
        UniqueConstraint("tenant_id", "idempotency_key", name="uq_jobs_tenant_idempotency_key"),
        Index("ix_jobs_tenant_created", "tenant_id", "id"),
        Index("ix_jobs_dispatch", "tier", "status", "priority", "id"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(64), default=DEFAULT_TENANT)
    kind: Mapped[str] = mapped_column(String(16))
    model: Mapped[str] = mapped_column(String(128))
    tier: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))
    priority: Mapped[int] = mapped_column(Integer, default=0)

    request: Mapped[dict[str, Any]] = mapped_column(JSONType)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSONType, default=None)
    error_type: Mapped[str | None] = mapped_column(String(64), default=None)
    error_message: Mapped[str | None] = mapped_column(Text, default=None)
    error_status: Mapped[int | None] = mapped_column(Integer, default=None)

    usage: Mapped[dict[str, Any] | None] = mapped_column(JSONType, default=None)
    prompt_tokens: Mapped[int] = mapped_column(Integer, default=0)
    completion_tokens: Mapped[int] = mapped_column(Integer, default=0)
    total_tokens: Mapped[int] = mapped_column(Integer, default=0)
    cached_tokens: Mapped[int] = mapped_column(Integer, default=0)
    reasoning_tokens: Mapped[int] = mapped_column(Integer, default=0)
    images: Mapped[int] = mapped_column(Integer, default=0)
    estimated_tokens: Mapped[int] = mapped_column(Integer, default=0)
    limiter_wait_ms: Mapped[int] = mapped_column(BigInteger, default=0)

    attempts: Mapped[int] = mapped_column(Integer, default=0)
    meta: Mapped[dict[str, Any] | None] = mapped_column("metadata", JSONType, default=None)
    webhook_url: Mapped[str | None] = mapped_column(Text, default=None)
    idempotency_key: Mapped[str | None] = mapped_column(String(255), default=None)
    request_hash: Mapped[str | None] = mapped_column(String(64), default=None)

    lease_owner: Mapped[str | None] = mapped_column(String(128), default=None)
    lease_expires_at: Mapped[datetime | None] = mapped_column(default=None)
    dispatched_at: Mapped[datetime | None] = mapped_column(default=None)
    cancel_requested_at: Mapped[datetime | None] = mapped_column(default=None)

    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(default=None)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    batch_id: Mapped[str | None] = mapped_column(String(40), default=None)
    custom_id: Mapped[str | None] = mapped_column(String(512), default=None)

    execution_path: Mapped[str | None] = mapped_column(String(16), default=None)
    """``live`` or ``provider_batch`` (``domain.jobs.execution``); None on jobs older than the column."""
    provider_batch_id: Mapped[str | None] = mapped_column(String(40), default=None)
    deadline_at: Mapped[datetime | None] = mapped_column(default=None)


class WebhookDelivery(Base):
    """One event on its way to one URL: the exact payload, where it is in its retry schedule, and the
    lease of the attempt in flight. Retries are scheduled here (``next_attempt_at``), not in the broker."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        Index("ix_webhook_deliveries_due", "status", "next_attempt_at"),
        Index("ix_webhook_deliveries_subject", "tenant_id", "subject_id", "id"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(64), default=DEFAULT_TENANT)
    event_id: Mapped[str] = mapped_column(String(40))
    event_type: Mapped[str] = mapped_column(String(64))
    subject_id: Mapped[str] = mapped_column(String(40))
    url: Mapped[str] = mapped_column(Text)
    payload: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16))
    attempt_count: Mapped[int] = mapped_column(Integer, default=0)
    round_attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(default=None)
    lease_expires_at: Mapped[datetime | None] = mapped_column(default=None)
    """The lease of the attempt in flight (``domain.leases``)."""
    dispatched_at: Mapped[datetime | None] = mapped_column(default=None)
    last_status_code: Mapped[int | None] = mapped_column(Integer, default=None)
    last_error: Mapped[str | None] = mapped_column(Text, default=None)
    delivered_at: Mapped[datetime | None] = mapped_column(default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class WebhookAttempt(Base):
    """One HTTP attempt of a delivery, as the delivery log shows it."""

    __tablename__ = "webhook_attempts"
    __table_args__ = (UniqueConstraint("delivery_id", "number", name="uq_webhook_attempts_number"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    delivery_id: Mapped[str] = mapped_column(String(40))
    number: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column()
    duration_ms: Mapped[int] = mapped_column(Integer, default=0)
    status_code: Mapped[int | None] = mapped_column(Integer, default=None)
    response_excerpt: Mapped[str | None] = mapped_column(Text, default=None)
    error: Mapped[str | None] = mapped_column(Text, default=None)


class ApiKey(Base):
    """A caller's API key. Only the SHA-256 of the key is stored (``domain.tenancy.api_keys`` says why)."""

    __tablename__ = "api_keys"
    __table_args__ = (Index("ix_api_keys_tenant", "tenant_id"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(64))
    name: Mapped[str | None] = mapped_column(String(128), default=None)
    key_hash: Mapped[str] = mapped_column(String(64))
    scopes: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(default=None)
    revoked_at: Mapped[datetime | None] = mapped_column(default=None)
    last_used_at: Mapped[datetime | None] = mapped_column(default=None)


# Counts a tenant's queued jobs without scanning the backlog (domain.tenancy.quotas).
Index("ix_jobs_tenant_status", Job.tenant_id, Job.status)


Index("ix_jobs_batch_status", Job.batch_id, Job.status)


class StoredFile(Base):
    """An uploaded or generated file (OpenAI's FileObject). Its bytes live in ``file_chunks``."""

    __tablename__ = "files"
    __table_args__ = (
        Index("ix_files_tenant_id", "tenant_id", "id"),
        Index("ix_files_expires_at", "expires_at"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(64), default=DEFAULT_TENANT)
    purpose: Mapped[str] = mapped_column(String(32))
    filename: Mapped[str] = mapped_column(String(255))
    bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    line_count: Mapped[int] = mapped_column(Integer, default=0)
    status: Mapped[str] = mapped_column(String(16))
    batch_id: Mapped[str | None] = mapped_column(String(40), default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(default=None)


class FileChunk(Base):
    """One piece of a file's bytes, in order of ``seq``; kept in the database so every machine reads it."""

    __tablename__ = "file_chunks"

    file_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    data: Mapped[bytes] = mapped_column(LargeBinary)


class Batch(Base):
    """An OpenAI-style batch: one input file fanned out into jobs, and the output files they produce."""

    __tablename__ = "batches"
    __table_args__ = (
        Index("ix_batches_tenant_id", "tenant_id", "id"),
        Index("ix_batches_status", "status"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(64), default=DEFAULT_TENANT)
    endpoint: Mapped[str] = mapped_column(String(64))
    input_file_id: Mapped[str] = mapped_column(String(40))
    completion_window: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))
    model: Mapped[str | None] = mapped_column(String(128), default=None)
    errors: Mapped[list[dict[str, Any]] | None] = mapped_column(JSONType, default=None)
    output_file_id: Mapped[str | None] = mapped_column(String(40), default=None)
    error_file_id: Mapped[str | None] = mapped_column(String(40), default=None)

    request_total: Mapped[int] = mapped_column(Integer, default=0)
    request_completed: Mapped[int] = mapped_column(Integer, default=0)
    request_failed: Mapped[int] = mapped_column(Integer, default=0)
    usage: Mapped[dict[str, Any] | None] = mapped_column(JSONType, default=None)
    meta: Mapped[dict[str, Any] | None] = mapped_column("metadata", JSONType, default=None)
    webhook_url: Mapped[str | None] = mapped_column(Text, default=None)
    output_expires_seconds: Mapped[int | None] = mapped_column(Integer, default=None)
    execution: Mapped[str | None] = mapped_column(String(16), default=None)

    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    in_progress_at: Mapped[datetime | None] = mapped_column(default=None)
    expires_at: Mapped[datetime | None] = mapped_column(default=None)
    finalizing_at: Mapped[datetime | None] = mapped_column(default=None)
    completed_at: Mapped[datetime | None] = mapped_column(default=None)
    failed_at: Mapped[datetime | None] = mapped_column(default=None)
    expired_at: Mapped[datetime | None] = mapped_column(default=None)
    cancelling_at: Mapped[datetime | None] = mapped_column(default=None)
    cancelled_at: Mapped[datetime | None] = mapped_column(default=None)
    expiring_at: Mapped[datetime | None] = mapped_column(default=None)
    lease_expires_at: Mapped[datetime | None] = mapped_column(default=None)
    """The lease of an ingest or finalization run (``domain.leases``)."""
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


# Usage reports read a tenant's jobs by the time they finished (domain.tokens.usage_report).
Index("ix_jobs_tenant_finished", Job.tenant_id, Job.finished_at)


# The dispatcher's partial indexes (domain.jobs.dispatch_repository). Queries repeat these predicates word for
# word, with literals rather than parameters, so both PostgreSQL and SQLite can prove they may use them.
BACKLOG_PREDICATE = "status = 'queued' AND dispatched_at IS NULL"
IN_FLIGHT_PREDICATE = "status IN ('queued', 'running') AND dispatched_at IS NOT NULL"
RUNNING_PREDICATE = "status = 'running'"
Index(
    "ix_jobs_backlog",
    Job.tier,
    Job.tenant_id,
    Job.batch_id,
    Job.priority.desc(),
    Job.id,
    postgresql_where=text(BACKLOG_PREDICATE),
    sqlite_where=text(BACKLOG_PREDICATE),
)
Index(
    "ix_jobs_in_flight",
    Job.tier,
    Job.tenant_id,
    postgresql_where=text(IN_FLIGHT_PREDICATE),
    sqlite_where=text(IN_FLIGHT_PREDICATE),
)
Index(
    "ix_jobs_running_lease",
    Job.lease_expires_at,
    postgresql_where=text(RUNNING_PREDICATE),
    sqlite_where=text(RUNNING_PREDICATE),
)


class JobAttempt(Base):
    """One upstream attempt of a job, as ``GET /v1/jobs/{id}`` shows it (``domain.jobs.attempts``)."""

    __tablename__ = "job_attempts"
    __table_args__ = (UniqueConstraint("job_id", "number", name="uq_job_attempts_number"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    job_id: Mapped[str] = mapped_column(String(40))
    number: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime | None] = mapped_column(default=None)
    finished_at: Mapped[datetime] = mapped_column(default=utcnow)
    outcome: Mapped[str] = mapped_column(String(16))
    status_code: Mapped[int | None] = mapped_column(Integer, default=None)
    error_type: Mapped[str | None] = mapped_column(String(64), default=None)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    wait_before_next_seconds: Mapped[float | None] = mapped_column(Float, default=None)


PROVIDER_BATCH_PATH = "provider_batch"
"""``jobs.execution_path`` of a job run through the provider's Batch API (``domain.jobs.execution``)."""

# Deferred jobs waiting for a provider batch (``domain.provider_batches``), and the jobs each one holds.
DEFERRED_PREDICATE = "status = 'running' AND execution_path = 'provider_batch' AND provider_batch_id IS NULL"
Index(
    "ix_jobs_deferred",
    Job.tier,
    Job.kind,
    Job.model,
    Job.id,
    postgresql_where=text(DEFERRED_PREDICATE),
    sqlite_where=text(DEFERRED_PREDICATE),
)
Index("ix_jobs_provider_batch", Job.provider_batch_id, Job.status)


class ProviderBatch(Base):
    """One batch on the provider's own Batch API: the jobs it holds (``jobs.provider_batch_id``), the file
    uploaded for it and where it is. The row is written (``pending``) before anything is uploaded, so a
    crash at any step is resumed from here (``domain.provider_batches.states``)."""

    __tablename__ = "provider_batches"
    __table_args__ = (Index("ix_provider_batches_due", "state", "next_poll_at"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    provider: Mapped[str] = mapped_column(String(64))
    endpoint: Mapped[str] = mapped_column(String(64))
    model: Mapped[str] = mapped_column(String(128))
    state: Mapped[str] = mapped_column(String(16))
    filename: Mapped[str] = mapped_column(String(255))
    request_count: Mapped[int] = mapped_column(Integer, default=0)
    bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    input_file_id: Mapped[str | None] = mapped_column(String(128), default=None)
    remote_id: Mapped[str | None] = mapped_column(String(128), default=None)
    remote_status: Mapped[str | None] = mapped_column(String(32), default=None)
    output_file_id: Mapped[str | None] = mapped_column(String(128), default=None)
    error_file_id: Mapped[str | None] = mapped_column(String(128), default=None)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    polls: Mapped[int] = mapped_column(Integer, default=0)
    next_poll_at: Mapped[datetime | None] = mapped_column(default=None)
    lease_expires_at: Mapped[datetime | None] = mapped_column(default=None)
    """The lease of the run advancing it (``domain.leases``)."""
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    submitted_at: Mapped[datetime | None] = mapped_column(default=None)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
