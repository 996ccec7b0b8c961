"""OpenAI-compatible batches: their status, the endpoints they serve, and the HTTP contract (pure).

::

    validating ──▶ in_progress ──▶ finalizing ──▶ completed
        │               │  └────────(window passed)──────▶ expired
        │               ▼
        ├─────────▶ cancelling ───────────────────────▶ cancelled
        └──▶ failed (the input file is invalid)

``failed``, ``completed``, ``expired`` and ``cancelled`` are terminal. A batch leaves ``in_progress``
(or ``cancelling``) only once none of its jobs is queued or running; its output and error files are
written while it is ``finalizing`` (or still ``cancelling``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from domain.jobs.execution import ExecutionMode
from domain.jobs.schemas import MAX_URL_LENGTH, validate_metadata
from domain.status import JobKind

COMPLETION_WINDOWS = {"24h": 24 * 3600}
"""Completion windows a batch may ask for, in seconds."""


class BatchStatus(StrEnum):
    """Where a batch is in its life (OpenAI's values)."""

    validating = "validating"
    failed = "failed"
    in_progress = "in_progress"
    finalizing = "finalizing"
    completed = "completed"
    expired = "expired"
    cancelling = "cancelling"
    cancelled = "cancelled"


TERMINAL = frozenset({BatchStatus.failed, BatchStatus.completed, BatchStatus.expired, BatchStatus.cancelled})
CANCELLABLE = frozenset({BatchStatus.validating, BatchStatus.in_progress, BatchStatus.finalizing})
FINALIZABLE = frozenset({BatchStatus.in_progress, BatchStatus.cancelling, BatchStatus.finalizing})
"""A batch in one of these states is finalized once none of its jobs is unfinished."""


class Endpoint(StrEnum):
    """The endpoints a batch can target."""

    chat = "/v1/chat/completions"
    embeddings = "/v1/embeddings"
    images = "/v1/images/generations"
    responses = "/v1/responses"


ENDPOINT_KINDS: dict[Endpoint, JobKind] = {
    Endpoint.chat: JobKind.chat,
    Endpoint.embeddings: JobKind.embedding,
    Endpoint.images: JobKind.image,
    Endpoint.responses: JobKind.response,
}


def has_image_part(body: dict[str, Any]) -> bool:
    """True when a chat body carries at least one ``image_url`` content part (a vision job)."""
    messages = body.get("messages")
    if not isinstance(messages, list):
        return False
    for message in messages:
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, list) and any(
            isinstance(part, dict) and part.get("type") == "image_url" for part in content
        ):
            return True
    return False


def job_kind_for(endpoint: Endpoint, body: dict[str, Any]) -> JobKind:
    """The job kind a line becomes: the endpoint decides, and chat bodies with images are vision."""
    kind = ENDPOINT_KINDS[endpoint]
    if kind is JobKind.chat and has_image_part(body):
        return JobKind.vision
    return kind


class ExpiresAfter(BaseModel):
    """When generated files expire: ``seconds`` after their creation."""

    model_config = ConfigDict(extra="forbid")

    anchor: Literal["created_at"]
    seconds: int = Field(ge=3600, le=30 * 24 * 3600)


class BatchCreate(BaseModel):
    """``POST /v1/batches``. ``webhook_url`` is batchery's own field (the SDK sends it in ``extra_body``)."""

    model_config = ConfigDict(extra="forbid")

    input_file_id: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    endpoint: Endpoint
    completion_window: Literal["24h"]
    metadata: dict[str, str] | None = None
    output_expires_after: ExpiresAfter | None = None
    webhook_url: Annotated[str, StringConstraints(max_length=MAX_URL_LENGTH)] | None = None
    execution: ExecutionMode = ExecutionMode.live
    """batchery's own field (``extra_body``): ``auto`` or ``provider_batch`` sends the lines the tier's
    provider can take to its Batch API, at its batch price (``domain.jobs.execution``)."""

    @field_validator("metadata")
    @classmethod
    def _metadata_limits(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        return validate_metadata(value)

    @field_validator("webhook_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("webhook_url must be an http(s) URL")
        return value


class BatchError(BaseModel):
    """One problem found in the input file (``line`` is 1-based)."""

    code: str
    message: str
    param: str | None = None
    line: int | None = None


class BatchErrors(BaseModel):
    object: Literal["list"] = "list"
    data: list[BatchError]


class RequestCounts(BaseModel):
    total: int = 0
    completed: int = 0
    failed: int = 0


class InputTokensDetails(BaseModel):
    cached_tokens: int = 0


class OutputTokensDetails(BaseModel):
    reasoning_tokens: int = 0


class BatchUsage(BaseModel):
    """Token usage summed over the batch's requests, in the Batch object's shape."""

    input_tokens: int = 0
    input_tokens_details: InputTokensDetails = Field(default_factory=InputTokensDetails)
    output_tokens: int = 0
    output_tokens_details: OutputTokensDetails = Field(default_factory=OutputTokensDetails)
    total_tokens: int = 0


class BatchOut(BaseModel):
    """A batch as the API shows it: OpenAI's Batch object, every field present (timestamps in unix
    seconds), plus ``webhook_url``."""

    id: str
    object: Literal["batch"] = "batch"
    endpoint: str
    model: str | None
    errors: BatchErrors | None
    input_file_id: str
    completion_window: str
    status: BatchStatus
    output_file_id: str | None
    error_file_id: str | None
    created_at: int
    in_progress_at: int | None
    expires_at: int | None
    finalizing_at: int | None
    completed_at: int | None
    failed_at: int | None
    expired_at: int | None
    cancelling_at: int | None
    cancelled_at: int | None
    request_counts: RequestCounts
    usage: BatchUsage
    metadata: dict[str, str] | None
    webhook_url: str | None = None
    execution: ExecutionMode = ExecutionMode.live


class BatchList(BaseModel):
    object: Literal["list"] = "list"
    data: list[BatchOut]
    first_id: str | None
    last_id: str | None
    has_more: bool


def unix(moment: datetime | None) -> int | None:
    """Unix seconds of a datetime (naive ones, as SQLite returns them, are UTC)."""
    if moment is None:
        return None
    return int((moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp())
