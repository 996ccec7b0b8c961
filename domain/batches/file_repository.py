"""Every SQL statement on files: their rows, and their bytes as ordered chunks in ``file_chunks``.

Bytes live in the database so that the API (which receives uploads and serves downloads) and the
workers (which read inputs and write outputs) can run on different machines with nothing else shared.
A file is read back one chunk per query, so neither side ever holds a whole file in memory.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime, timedelta

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session, sessionmaker

from domain.batches.files import CHUNK_BYTES, FileOut, file_id
from domain.batches.schemas import unix
from domain.errors import NotFound
from domain.storage.models import FileChunk, StoredFile, utcnow
from domain.storage.sessions import session_scope

STALE_UPLOAD_SECONDS = 3600
"""An upload still unfinished after this long was abandoned (its connection died with the API)."""


def create_file(
    session: Session,
    *,
    tenant_id: str,
    filename: str,
    purpose: str,
    expires_at: datetime | None,
    status: str = "uploaded",
    batch_id: str | None = None,
    now: datetime | None = None,
) -> StoredFile:
    row = StoredFile(
        id=file_id(),
        tenant_id=tenant_id,
        purpose=purpose,
        filename=filename,
        bytes=0,
        line_count=0,
        status=status,
        batch_id=batch_id,
        created_at=now or utcnow(),
        expires_at=expires_at,
    )
    session.add(row)
    session.flush()
    return row


def add_chunk(session: Session, file_id_: str, seq: int, data: bytes) -> None:
    session.add(FileChunk(file_id=file_id_, seq=seq, data=data))
    session.flush()


def mark_processed(session: Session, file_id_: str, *, size: int, lines: int, **values: object) -> None:
    """The file's bytes are all stored: record its size and line count (and any other ``values``)."""
    session.execute(
        update(StoredFile)
        .where(StoredFile.id == file_id_)
        .values(status="processed", bytes=size, line_count=lines, **values)
    )


def get_file(session: Session, file_id_: str, *, tenant_id: str) -> StoredFile:
    row = session.get(StoredFile, file_id_)
    if row is None or row.tenant_id != tenant_id:
        raise NotFound(f"No such File object: {file_id_}", param="file_id")
    return row


def list_files(
    session: Session,
    *,
    tenant_id: str,
    purpose: str | None = None,
    after: str | None = None,
    limit: int = 10_000,
    ascending: bool = False,
) -> tuple[list[StoredFile], bool]:
    """Files by creation (newest first unless ``ascending``); ``after`` is the previous page's last id."""
    query = select(StoredFile).where(StoredFile.tenant_id == tenant_id, StoredFile.status == "processed")
    if purpose is not None:
        query = query.where(StoredFile.purpose == purpose)
    if after is not None:
        query = query.where(StoredFile.id > after if ascending else StoredFile.id < after)
    order = StoredFile.id.asc() if ascending else StoredFile.id.desc()
    rows = list(session.scalars(query.order_by(order).limit(limit + 1)))
    return rows[:limit], len(rows) > limit


def delete_file(session: Session, file_id_: str, *, tenant_id: str) -> None:
    row = get_file(session, file_id_, tenant_id=tenant_id)
    _delete(session, [row.id])


def _delete(session: Session, ids: list[str]) -> None:
    if ids:
        session.execute(delete(FileChunk).where(FileChunk.file_id.in_(ids)))
        session.execute(delete(StoredFile).where(StoredFile.id.in_(ids)))


def delete_batch_outputs(session: Session, batch_id: str) -> None:
    """Drop files an earlier, interrupted finalization of ``batch_id`` left behind."""
    ids = list(session.scalars(select(StoredFile.id).where(StoredFile.batch_id == batch_id)))
    _delete(session, ids)


def purge_expired(session: Session, *, now: datetime, limit: int = 100) -> int:
    """Delete files past ``expires_at`` and uploads abandoned midway; returns how many."""
    stale = now - timedelta(seconds=STALE_UPLOAD_SECONDS)
    expired = (StoredFile.expires_at.is_not(None)) & (StoredFile.expires_at < now)
    abandoned = (StoredFile.status == "uploaded") & (StoredFile.created_at < stale)
    ids = list(session.scalars(select(StoredFile.id).where(expired | abandoned).limit(limit)))
    _delete(session, ids)
    return len(ids)


def chunk_count(session: Session, file_id_: str) -> int:
    return int(session.scalar(select(func.count()).where(FileChunk.file_id == file_id_)) or 0)


def iter_chunks(session: Session, file_id_: str) -> Iterator[bytes]:
    """The file's bytes in order, one chunk per query, on ``session``."""
    seq = 0
    while True:
        data = session.scalar(
            select(FileChunk.data).where(FileChunk.file_id == file_id_, FileChunk.seq == seq)
        )
        if data is None:
            return
        yield bytes(data)
        seq += 1


def stream_chunks(sessions: sessionmaker[Session], file_id_: str) -> Iterator[bytes]:
    """Like ``iter_chunks`` but each chunk in its own short session (for a slow HTTP download)."""
    seq = 0
    while True:
        with session_scope(sessions) as session:
            data = session.scalar(
                select(FileChunk.data).where(FileChunk.file_id == file_id_, FileChunk.seq == seq)
            )
        if data is None:
            return
        yield bytes(data)
        seq += 1


class ChunkWriter:
    """Collects bytes and stores them as CHUNK_BYTES pieces through ``store(seq, data)``."""

    def __init__(self, store: Callable[[int, bytes], None], chunk_bytes: int = CHUNK_BYTES) -> None:
        self._store = store
        self._chunk_bytes = chunk_bytes
        self._buffer = bytearray()
        self._seq = 0
        self.size = 0

    def write(self, data: bytes) -> None:
        self._buffer += data
        self.size += len(data)
        while len(self._buffer) >= self._chunk_bytes:
            self._flush(self._chunk_bytes)

    def close(self) -> None:
        if self._buffer:
            self._flush(len(self._buffer))

    def _flush(self, size: int) -> None:
        piece = bytes(self._buffer[:size])
        del self._buffer[:size]
        self._store(self._seq, piece)
        self._seq += 1


def file_out(row: StoredFile) -> FileOut:
    """The row as OpenAI's FileObject."""
    return FileOut(
        id=row.id,
        bytes=row.bytes,
        created_at=unix(row.created_at) or 0,
        expires_at=unix(row.expires_at),
        filename=row.filename,
        purpose=row.purpose,
        status="processed" if row.status == "processed" else "uploaded",
    )
