"""The HTTP contract: request and response models for jobs.

Bodies are checked per kind before anything is stored; the OpenAI request itself is kept as given
(unknown fields pass through to the upstream), only the parts batchery relies on are validated.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StringConstraints,
    ValidationError,
    field_validator,
)

from domain.errors import InvalidRequest
from domain.jobs.execution import ExecutionMode, ExecutionPath, window_seconds
from domain.jobs.json_safety import text_problem
from domain.jobs.streaming import refuse_streaming
from domain.status import JobKind, JobStatus

MAX_METADATA_PAIRS = 16
MAX_METADATA_KEY = 64
MAX_METADATA_VALUE = 512
MAX_URL_LENGTH = 8192  # hard ceiling; BATCHERY_MAX_URL_LENGTH (domain.jobs.input_limits) is the limit
_DATA_IMAGE = re.compile(r"^data:image/[a-zA-Z0-9.+-]+;base64,", re.ASCII)

ModelName = Annotated[str, StringConstraints(min_length=1, max_length=128, strip_whitespace=True)]


class _OpenAIBody(BaseModel):
    """An OpenAI request body: the named fields are checked, everything else passes through."""

    model_config = ConfigDict(extra="allow")

    model: ModelName


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[dict[str, Any]] | None = None


class StreamOptions(BaseModel):
    """Chat's ``stream_options`` (other fields pass through)."""

    model_config = ConfigDict(extra="allow")
    include_usage: bool | None = None


class ChatBody(_OpenAIBody):
    messages: list[ChatMessage] = Field(min_length=1)
    n: int | None = Field(default=None, ge=1, le=128)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    stream: StrictBool | None = None
    stream_options: StreamOptions | None = None


class VisionBody(ChatBody):
    @field_validator("messages")
    @classmethod
    def _has_image(cls, messages: list[ChatMessage]) -> list[ChatMessage]:
        images = [
            part
            for message in messages
            if isinstance(message.content, list)
            for part in message.content
            if isinstance(part, dict) and part.get("type") == "image_url"
        ]
        if not images:
            raise ValueError("a vision job needs at least one image_url content part")
        for part in images:
            image = part.get("image_url")
            url = image.get("url") if isinstance(image, dict) else None
            if not isinstance(url, str) or not (
                url.startswith(("http://", "https://")) or _DATA_IMAGE.match(url)
            ):
                raise ValueError("image_url.url must be an http(s) URL or a data:image/...;base64 URI")
            if url.startswith("http") and len(url) > MAX_URL_LENGTH:
                raise ValueError(f"image URLs are limited to {MAX_URL_LENGTH} characters")
            detail = image.get("detail") if isinstance(image, dict) else None
            if detail not in (None, "low", "high", "auto"):
                raise ValueError("image_url.detail must be low, high or auto")
        return messages


class EmbeddingBody(_OpenAIBody):
    input: str | list[str] | list[int] | list[list[int]]
    dimensions: int | None = Field(default=None, ge=1)

    @field_validator("input")
    @classmethod
    def _not_empty(cls, value: Any) -> Any:
        if (isinstance(value, (str, list))) and len(value) == 0:
            raise ValueError("input must not be empty")
        return value


class ImageBody(_OpenAIBody):
    prompt: str = Field(min_length=1)
    n: int | None = Field(default=None, ge=1, le=10)


class ResponseBody(_OpenAIBody):
    """A Responses API body: ``input`` is a string or a list of input items."""

    input: str | list[dict[str, Any] | str] = Field(min_length=1)
    max_output_tokens: int | None = Field(default=None, ge=1)
    stream: StrictBool | None = None


BODY_MODELS: dict[JobKind, type[_OpenAIBody]] = {
    JobKind.chat: ChatBody,
    JobKind.vision: VisionBody,
    JobKind.embedding: EmbeddingBody,
    JobKind.image: ImageBody,
    JobKind.response: ResponseBody,
}


def validate_body(kind: JobKind, body: dict[str, Any]) -> str:
    """Check ``body`` for ``kind``; returns the model. Raises InvalidRequest naming the field."""
    refuse_streaming(body, kind.value)
    try:
        parsed = BODY_MODELS[kind].model_validate(body)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err.get("loc", ()))
        param = f"request.{where}" if where else "request"
        raise InvalidRequest(f"{param}: {err.get('msg', 'invalid')}", param=param) from exc
    return parsed.model


def with_model(request: dict[str, Any], model: str) -> dict[str, Any]:
    """``request`` naming ``model`` (the name as validated, without surrounding spaces), so the model
    the job is routed by is the one the upstream is asked for."""
    return request if request.get("model") == model else {**request, "model": model}


def validate_metadata(value: dict[str, str] | None) -> dict[str, str] | None:
    """OpenAI's metadata limits: 16 pairs, keys up to 64 characters, values up to 512."""
    if value is None:
        return None
    if len(value) > MAX_METADATA_PAIRS:
        raise ValueError(f"metadata holds at most {MAX_METADATA_PAIRS} pairs")
    for key, item in value.items():
        problem = text_problem(key) or text_problem(item)
        if problem is not None:
            raise ValueError(f"metadata keys and values must be storable text: one {problem}")
        if len(key) > MAX_METADATA_KEY:
            raise ValueError(f"metadata keys are at most {MAX_METADATA_KEY} characters")
        if len(item) > MAX_METADATA_VALUE:
            raise ValueError(f"metadata values are at most {MAX_METADATA_VALUE} characters")
    return value


class JobCreate(BaseModel):
    """``POST /v1/jobs``."""

    model_config = ConfigDict(extra="forbid")

    kind: JobKind
    request: dict[str, Any]
    webhook_url: Annotated[str, StringConstraints(max_length=MAX_URL_LENGTH)] | None = None
    metadata: dict[str, str] | None = None
    priority: int = Field(default=0, ge=-100, le=100)
    execution: ExecutionMode = Field(
        default=ExecutionMode.live,
        description="live (now), provider_batch (the provider's Batch API, at its batch price) or auto",
    )
    completion_window: str | None = Field(
        default=None,
        description="how long the job may take, such as '24h' or '7d' (default: 24h when deferred)",
    )

    @field_validator("metadata")
    @classmethod
    def _metadata_limits(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        return validate_metadata(value)

    @field_validator("completion_window")
    @classmethod
    def _window(cls, value: str | None) -> str | None:
        if value is not None:
            window_seconds(value)
        return value


class JobError(BaseModel):
    type: str
    message: str
    status_code: int | None = None


class JobUsage(BaseModel):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    cached_tokens: int = 0
    reasoning_tokens: int = 0
    images: int = 0


class AttemptOut(BaseModel):
    """One upstream attempt of a job (``domain.jobs.attempts`` explains the outcomes)."""

    number: int
    outcome: Literal["succeeded", "retrying", "failed", "lost"]
    started_at: datetime | None
    finished_at: datetime
    status_code: int | None
    error_type: str | None
    error: str | None
    wait_before_next_seconds: float | None


class JobOut(BaseModel):
    """A job as the API shows it."""

    id: str
    object: Literal["job"] = "job"
    kind: JobKind
    model: str
    tier: str
    status: JobStatus
    priority: int
    attempts: int
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    request: dict[str, Any]
    result: dict[str, Any] | None
    error: JobError | None
    usage: JobUsage | None
    estimated_tokens: int
    limiter_wait_ms: int
    metadata: dict[str, str] | None
    webhook_url: str | None
    batch_id: str | None = Field(default=None, description="the batch this job came from, if any")
    custom_id: str | None = Field(default=None, description="its custom_id in the batch's input file")
    stream: Literal["aggregated"] | None = Field(
        default=None,
        description="'aggregated' when the request asked for a stream: the upstream was called streamed "
        "(with include_usage) and the result is the stream aggregated into the non-streamed object",
    )
    execution_path: ExecutionPath = Field(
        default=ExecutionPath.live,
        description="what ran (or runs) the job: a live call, or a line of a provider batch",
    )
    provider_batch_id: str | None = Field(
        default=None, description="the provider batch that held the job, when one did"
    )
    deadline_at: datetime | None = Field(default=None, description="the end of its completion window")
    attempts_log: list[AttemptOut] | None = Field(
        default=None, description="each upstream attempt, first to last; only in GET /v1/jobs/{id}"
    )


class JobList(BaseModel):
    object: Literal["list"] = "list"
    data: list[JobOut]
    first_id: str | None
    last_id: str | None
    has_more: bool


class ErrorDetail(BaseModel):
    code: str
    message: str
    param: str | None = None
    type: str = "invalid_request_error"


class ErrorBody(BaseModel):
    """Every 4xx/5xx answer: ``{"error": {"code", "message", "param", "type"}}``."""

    error: ErrorDetail
