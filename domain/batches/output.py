"""A finished batch's output and error files, in OpenAI's exact line format, written as a stream.

Output file, one line per request that got a 2xx answer::

    {"id": "batch_req_…", "custom_id": "r1",
     "response": {"status_code": 200, "request_id": "req_…", "body": {…the upstream's body…}},
     "error": null}

Error file: a request the upstream refused keeps the same shape with its HTTP status and error body;
a failure that was not an HTTP answer (timeout, connection error, attempts exhausted) and a request
that never ran (batch cancelled or expired) has ``"response": null`` and
``"error": {"code", "message"}``; ``batch_expired`` and ``batch_cancelled`` are the codes of the last two.

Jobs are read by id in pages of ``PAGE`` and the lines go straight into file chunks, so memory stays
bounded however large the batch is.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import select
from sqlalchemy.orm import Session

from domain.batches import file_repository
from domain.batches.files import DEFAULT_FILE_TTL_SECONDS
from domain.batches.schemas import BatchStatus
from domain.status import JobStatus
from domain.storage.models import Batch, Job

PAGE = 500
NOT_RUN = {
    BatchStatus.expired: (
        "batch_expired",
        "This request could not be executed before the completion window expired.",
    ),
    BatchStatus.cancelled: ("batch_cancelled", "This request was cancelled before it could be executed."),
    BatchStatus.completed: ("request_cancelled", "This request was cancelled before it could be executed."),
}


@dataclass(frozen=True, slots=True)
class JobResult:
    """The columns of a job that its output line needs."""

    id: str
    custom_id: str | None
    status: str
    result: dict[str, Any] | None
    error_type: str | None
    error_message: str | None
    error_status: int | None


def line_id(job_id: str) -> str:
    return "batch_req_" + job_id.split("_", 1)[-1]


def request_id(job_id: str) -> str:
    return "req_" + job_id.split("_", 1)[-1]


def result_line(job: JobResult, end: BatchStatus) -> tuple[Literal["output", "error"], dict[str, Any]]:
    """Which file the job's line goes to, and the line. ``end`` is the batch's final status."""
    line: dict[str, Any] = {
        "id": line_id(job.id),
        "custom_id": job.custom_id,
        "response": None,
        "error": None,
    }
    answered = job.result is not None and job.error_type is None
    if job.status == JobStatus.succeeded.value or (job.status == JobStatus.cancelled.value and answered):
        line["response"] = {"status_code": 200, "request_id": request_id(job.id), "body": job.result}
        return "output", line
    if job.status == JobStatus.failed.value and job.error_status is not None:
        body = job.result if job.result is not None else _error_body(job)
        line["response"] = {"status_code": job.error_status, "request_id": request_id(job.id), "body": body}
        return "error", line
    if job.status == JobStatus.failed.value:
        line["error"] = {"code": job.error_type or "request_failed", "message": job.error_message or ""}
        return "error", line
    code, message = NOT_RUN[end]
    line["error"] = {"code": code, "message": message}
    return "error", line


def _error_body(job: JobResult) -> dict[str, Any]:
    return {
        "error": {
            "message": job.error_message or "",
            "type": job.error_type or "upstream_error",
            "param": None,
            "code": None,
        }
    }


def encode_line(line: dict[str, Any]) -> bytes:
    return json.dumps(line, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"


def iter_job_results(session: Session, batch_id: str, *, page: int = PAGE) -> Iterator[JobResult]:
    """The batch's jobs in id order, ``page`` rows per query (keyset pagination)."""
    columns = (
        Job.id,
        Job.custom_id,
        Job.status,
        Job.result,
        Job.error_type,
        Job.error_message,
        Job.error_status,
    )
    last = ""
    while True:
        rows = session.execute(
            select(*columns).where(Job.batch_id == batch_id, Job.id > last).order_by(Job.id).limit(page)
        ).all()
        for row in rows:
            yield JobResult(*row)
        if len(rows) < page:
            return
        last = rows[-1][0]


class _FileSink:
    """One output file, created on its first line; its bytes go to chunks as they fill."""

    def __init__(self, session: Session, batch: Batch, name: str, now: datetime) -> None:
        self._session = session
        self._batch = batch
        self._name = name
        self._now = now
        self._writer: file_repository.ChunkWriter | None = None
        self.file_id: str | None = None
        self.lines = 0

    def write(self, data: bytes) -> None:
        if self._writer is None:
            ttl = self._batch.output_expires_seconds or DEFAULT_FILE_TTL_SECONDS
            row = file_repository.create_file(
                self._session,
                tenant_id=self._batch.tenant_id,
                filename=f"{self._batch.id}_{self._name}.jsonl",
                purpose="batch_output",
                expires_at=self._now + timedelta(seconds=ttl),
                batch_id=self._batch.id,
                now=self._now,
            )
            file_id = row.id
            self.file_id = file_id
            self._writer = file_repository.ChunkWriter(
                lambda seq, piece: file_repository.add_chunk(self._session, file_id, seq, piece)
            )
        self._writer.write(data)
        self.lines += 1

    def close(self) -> None:
        if self._writer is not None and self.file_id is not None:
            self._writer.close()
            file_repository.mark_processed(
                self._session, self.file_id, size=self._writer.size, lines=self.lines
            )


@dataclass(frozen=True, slots=True)
class Written:
    output_file_id: str | None
    error_file_id: str | None
    completed: int
    failed: int


def write_results(session: Session, batch: Batch, *, end: BatchStatus, now: datetime) -> Written:
    """Write the batch's output and error files (each only if it has lines), in the caller's transaction."""
    file_repository.delete_batch_outputs(session, batch.id)
    sinks = {name: _FileSink(session, batch, name, now) for name in ("output", "error")}
    for job in iter_job_results(session, batch.id):
        target, line = result_line(job, end)
        sinks[target].write(encode_line(line))
    for sink in sinks.values():
        sink.close()
    return Written(
        output_file_id=sinks["output"].file_id,
        error_file_id=sinks["error"].file_id,
        completed=sinks["output"].lines,
        failed=sinks["error"].lines,
    )
