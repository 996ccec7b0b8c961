"""The HTTP contract of ``POST /v1/jobs/bulk``: up to ``MAX_BULK_JOBS`` jobs in one request.

Each item has the shape of a ``POST /v1/jobs`` body. Items are checked one by one, so the envelope
only requires a list; an item that is not a valid job is refused on its own, with the same error a
single submission would get, and the valid items are accepted.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

MAX_BULK_JOBS = 1000


class BulkJobsCreate(BaseModel):
    """``POST /v1/jobs/bulk``: ``{"jobs": [<a POST /v1/jobs body>, ...]}``."""

    model_config = ConfigDict(extra="forbid")

    jobs: list[Any] = Field(
        min_length=1,
        max_length=MAX_BULK_JOBS,
        description=f"1 to {MAX_BULK_JOBS} jobs, each shaped like a POST /v1/jobs body",
    )


class BulkItemError(BaseModel):
    """Why one item was refused; ``param`` names the field as ``jobs.<index>.<field>``."""

    code: str
    message: str
    param: str | None = None
    type: str = "invalid_request_error"


class BulkItemResult(BaseModel):
    """One item's outcome, in the order the items were sent."""

    index: int
    id: str | None = Field(description="the job's id when it was accepted")
    status: Literal["queued", "rejected"]
    tier: str | None = None
    error: BulkItemError | None = None


class BulkJobsOut(BaseModel):
    """The answer: every item's outcome, and how many were accepted and rejected."""

    object: Literal["list"] = "list"
    data: list[BulkItemResult]
    accepted: int
    rejected: int
