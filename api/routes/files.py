"""`/v1/files`: OpenAI-compatible upload (multipart, ``purpose=batch``), read, content, list, delete.

An upload is checked while it streams (``domain.batches.files.UploadScanner``) and stored chunk by chunk in
the database as it arrives, so the API never holds the file in memory and any worker can read it. A
refused or broken upload leaves nothing behind.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from api.auth import require_scope
from api.deps import SessionDep, SettingsDep, TenantDep
from api.multipart_stream import Form, read_multipart
from domain.batches import file_repository
from domain.batches.files import (
    CHUNK_BYTES,
    DEFAULT_FILE_TTL_SECONDS,
    MAX_FILE_TTL_SECONDS,
    MIN_FILE_TTL_SECONDS,
    UPLOAD_PURPOSES,
    FileDeleted,
    FileList,
    FileOut,
    UploadScanner,
)
from domain.errors import Conflict, InvalidRequest
from domain.jobs.json_safety import text_problem
from domain.jobs.schemas import ErrorBody
from domain.storage.models import utcnow
from domain.storage.sessions import session_scope

log = logging.getLogger(__name__)
router = APIRouter(prefix="/v1/files", tags=["files"])

_ERRORS: dict[int | str, dict[str, object]] = {
    code: {"model": ErrorBody} for code in (400, 401, 403, 404, 409, 413, 422, 503)
}
MULTIPART_OVERHEAD = 64 * 1024
"""Room for the form's boundaries, headers and text fields on top of the file itself."""


class _Upload:
    """Stores an upload's bytes as they arrive: checks each piece, writes whole chunks to the database."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        tenant_id: str,
        scanner: UploadScanner,
        form: Form,
        now: datetime,
    ) -> None:
        self.sessions = sessions
        self.created_at = now  # the instant ``expires_after`` counts from, as the stored ``created_at``
        self.tenant_id = tenant_id
        self.scanner = scanner
        self.form = form
        self.file_id: str | None = None
        self.buffer = bytearray()
        self.seq = 0

    async def feed(self, data: bytes) -> None:
        purpose = self.form.fields.get("purpose")
        if purpose is not None:
            _check_purpose(purpose)
        self.scanner.feed(data)
        self.buffer += data
        while len(self.buffer) >= CHUNK_BYTES:
            piece = bytes(self.buffer[:CHUNK_BYTES])
            del self.buffer[:CHUNK_BYTES]
            await self._store(piece)

    async def _store(self, piece: bytes) -> None:
        if self.file_id is None:
            self.file_id = await run_in_threadpool(self._create)
        await run_in_threadpool(self._add_chunk, self.file_id, self.seq, piece)
        self.seq += 1

    def _create(self) -> str:
        with session_scope(self.sessions) as session:
            row = file_repository.create_file(
                session,
                tenant_id=self.tenant_id,
                filename=_filename(self.form.filename),
                purpose="batch",
                expires_at=None,
                now=self.created_at,
            )
            return row.id

    def _add_chunk(self, file_id: str, seq: int, piece: bytes) -> None:
        with session_scope(self.sessions) as session:
            file_repository.add_chunk(session, file_id, seq, piece)

    async def finish(self, purpose: str, expires_at: datetime) -> FileOut:
        self.scanner.finish()
        if self.buffer:
            await self._store(bytes(self.buffer))
            self.buffer.clear()
        assert self.file_id is not None  # finish() refused an empty file
        return await run_in_threadpool(self._complete, self.file_id, purpose, expires_at)

    def _complete(self, file_id: str, purpose: str, expires_at: datetime) -> FileOut:
        with session_scope(self.sessions) as session:
            file_repository.mark_processed(
                session,
                file_id,
                size=self.scanner.size,
                lines=self.scanner.lines,
                purpose=purpose,
                filename=_filename(self.form.filename),
                expires_at=expires_at,
            )
            row = file_repository.get_file(session, file_id, tenant_id=self.tenant_id)
            return file_repository.file_out(row)

    async def discard(self) -> None:
        if self.file_id is not None:
            await run_in_threadpool(self._discard, self.file_id)

    def _discard(self, file_id: str) -> None:
        with session_scope(self.sessions) as session:
            file_repository.delete_file(session, file_id, tenant_id=self.tenant_id)


def _check_purpose(purpose: str) -> None:
    if purpose not in UPLOAD_PURPOSES:
        raise InvalidRequest(
            f"'{purpose}' is not a supported purpose; batchery accepts: {', '.join(sorted(UPLOAD_PURPOSES))}",
            param="purpose",
            code="invalid_purpose",
        )


def _filename(raw: str | None) -> str:
    name = (raw or "").replace("\\", "/").rsplit("/", 1)[-1].strip()
    problem = text_problem(name)
    if problem is not None:
        raise InvalidRequest(f"the file name {problem}", param="file")
    return name[:255] or "upload.jsonl"


def _expiry(form: Form, now: datetime) -> datetime:
    anchor = form.fields.get("expires_after[anchor]")
    seconds_text = form.fields.get("expires_after[seconds]")
    if anchor is None and seconds_text is None:
        return now + timedelta(seconds=DEFAULT_FILE_TTL_SECONDS)
    if anchor != "created_at":
        raise InvalidRequest("expires_after[anchor] must be 'created_at'", param="expires_after.anchor")
    try:
        seconds = int(seconds_text or "")
    except ValueError:
        seconds = -1
    if not MIN_FILE_TTL_SECONDS <= seconds <= MAX_FILE_TTL_SECONDS:
        raise InvalidRequest(
            f"expires_after[seconds] must be from {MIN_FILE_TTL_SECONDS} to {MAX_FILE_TTL_SECONDS}",
            param="expires_after.seconds",
        )
    return now + timedelta(seconds=seconds)


UPLOAD_FORM = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file", "purpose"],
                    "properties": {
                        "file": {
                            "type": "string",
                            "format": "binary",
                            "description": "JSONL, one request a line",
                        },
                        "purpose": {"type": "string", "enum": sorted(UPLOAD_PURPOSES)},
                        "expires_after[anchor]": {"type": "string", "enum": ["created_at"]},
                        "expires_after[seconds]": {
                            "type": "integer",
                            "minimum": MIN_FILE_TTL_SECONDS,
                            "maximum": MAX_FILE_TTL_SECONDS,
                        },
                    },
                }
            }
        },
    }
}
"""The form as OpenAPI describes it (the route reads the stream itself, so FastAPI cannot infer it)."""


@router.post(
    "",
    response_model=FileOut,
    responses=_ERRORS,
    dependencies=[require_scope("batches:write")],
    openapi_extra=UPLOAD_FORM,
)
async def upload_file(request: Request, tenant: TenantDep, settings: SettingsDep) -> FileOut:
    """Upload a JSONL batch input file (multipart fields ``file`` and ``purpose=batch``)."""
    now = utcnow()
    form = Form()
    scanner = UploadScanner(
        max_bytes=settings.file_max_bytes,
        max_lines=settings.batch_max_requests,
        max_line_bytes=settings.max_jsonl_line_bytes,
    )
    upload = _Upload(request.app.state.sessions, tenant, scanner, form, now)
    try:
        await read_multipart(
            request.headers.get("content-type"),
            request.stream(),
            file_field="file",
            on_file=upload.feed,
            max_body_bytes=settings.file_max_bytes + MULTIPART_OVERHEAD,
            form=form,
        )
        purpose = form.fields.get("purpose")
        if purpose is None:
            raise InvalidRequest(
                "Missing required parameter: 'purpose'.", param="purpose", code="missing_required_parameter"
            )
        _check_purpose(purpose)
        if not form.file_seen:
            raise InvalidRequest(
                "Missing required parameter: 'file'.", param="file", code="missing_required_parameter"
            )
        return await upload.finish(purpose, _expiry(form, now))
    except BaseException:
        try:
            await upload.discard()
        except Exception:  # the original error is the one to report; a stale upload is purged later
            log.warning("could not discard a refused upload", exc_info=True)
        raise


@router.get("", response_model=FileList, responses=_ERRORS, dependencies=[require_scope("batches:read")])
def list_files(
    session: SessionDep,
    tenant: TenantDep,
    purpose: Annotated[str | None, Query(max_length=32)] = None,
    after: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 10_000,
    order: Literal["asc", "desc"] = "desc",
) -> FileList:
    """Files, newest first (``order=asc`` for oldest first), with ``after`` cursor pagination."""
    rows, has_more = file_repository.list_files(
        session, tenant_id=tenant, purpose=purpose, after=after, limit=limit, ascending=order == "asc"
    )
    data = [file_repository.file_out(row) for row in rows]
    return FileList(
        data=data,
        first_id=data[0].id if data else None,
        last_id=data[-1].id if data else None,
        has_more=has_more,
    )


@router.get(
    "/{file_id}", response_model=FileOut, responses=_ERRORS, dependencies=[require_scope("batches:read")]
)
def get_file(file_id: str, session: SessionDep, tenant: TenantDep) -> FileOut:
    return file_repository.file_out(file_repository.get_file(session, file_id, tenant_id=tenant))


@router.get(
    "/{file_id}/content",
    response_class=StreamingResponse,
    responses={200: {"content": {"application/octet-stream": {}}}, **_ERRORS},
    dependencies=[require_scope("batches:read")],
)
def file_content(file_id: str, request: Request, session: SessionDep, tenant: TenantDep) -> StreamingResponse:
    """The file's bytes, streamed from the database one chunk at a time."""
    row = file_repository.get_file(session, file_id, tenant_id=tenant)
    if row.status != "processed":
        raise Conflict(f"file {file_id} is still being uploaded", param="file_id")
    safe_name = "".join(ch for ch in row.filename if ch.isascii() and ch.isprintable() and ch not in '"\\')
    return StreamingResponse(
        file_repository.stream_chunks(request.app.state.sessions, row.id),
        media_type="application/octet-stream",
        headers={
            "content-length": str(row.bytes),
            "content-disposition": f'attachment; filename="{safe_name or row.id}"',
        },
    )


@router.delete(
    "/{file_id}", response_model=FileDeleted, responses=_ERRORS, dependencies=[require_scope("batches:write")]
)
def delete_file(file_id: str, session: SessionDep, tenant: TenantDep) -> FileDeleted:
    file_repository.delete_file(session, file_id, tenant_id=tenant)
    return FileDeleted(id=file_id)
