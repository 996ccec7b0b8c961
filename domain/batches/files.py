"""OpenAI-compatible files: the FileObject contract and the checks an upload passes while it streams.

``UploadScanner`` sees the bytes of a ``purpose=batch`` upload chunk by chunk, as they arrive, and
refuses the upload at the first chunk that breaks a limit: total size, number of requests (non-blank
lines), the size of one line, or UTF-8. It keeps only counters and the few bytes of a character cut
between chunks, so memory does not grow with the file. Whether each line is a valid request is
decided later, when a batch is created from the file (``domain.batches.ingest``), because that depends
on the batch's endpoint; OpenAI reports those problems on the batch too.
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass, field
from typing import Literal

from pydantic import BaseModel

from domain.errors import InvalidRequest, LimitExceeded, PayloadTooLarge
from domain.ids import new_id

UPLOAD_PURPOSES = frozenset({"batch"})
"""Purposes a caller may upload with; ``batch_output`` files are written by batchery itself."""
DEFAULT_FILE_TTL_SECONDS = 30 * 24 * 3600
"""Batch input and output files expire after 30 days unless told otherwise, as OpenAI's do."""
MIN_FILE_TTL_SECONDS = 3600
MAX_FILE_TTL_SECONDS = 30 * 24 * 3600
CHUNK_BYTES = 1024 * 1024
"""File bytes are stored in pieces of this size."""

_BLANK = b" \t\r\n"


def file_id() -> str:
    """``file-`` followed by a sortable unique part, like OpenAI's ids."""
    return "file-" + new_id("f").split("_", 1)[1]


class FileOut(BaseModel):
    """OpenAI's FileObject."""

    id: str
    object: Literal["file"] = "file"
    bytes: int
    created_at: int
    expires_at: int | None
    filename: str
    purpose: str
    status: Literal["uploaded", "processed", "error"]
    status_details: str | None = None


class FileList(BaseModel):
    object: Literal["list"] = "list"
    data: list[FileOut]
    first_id: str | None
    last_id: str | None
    has_more: bool


class FileDeleted(BaseModel):
    id: str
    object: Literal["file"] = "file"
    deleted: bool = True


@dataclass
class UploadScanner:
    """Checks an upload's bytes as they stream in; raises a ServiceError at the first broken limit."""

    max_bytes: int
    max_lines: int
    max_line_bytes: int
    size: int = 0
    lines: int = 0
    _physical_line: int = 1
    _line_bytes: int = 0
    _line_blank: bool = True
    _decoder: codecs.IncrementalDecoder = field(
        default_factory=lambda: codecs.getincrementaldecoder("utf-8")("strict")
    )

    def feed(self, chunk: bytes) -> None:
        """Account for the next piece of the file."""
        self.size += len(chunk)
        if self.size > self.max_bytes:
            raise PayloadTooLarge(
                f"the file is larger than the limit of {self.max_bytes} bytes",
                param="file",
                code="file_too_large",
            )
        try:
            self._decoder.decode(chunk)
        except UnicodeDecodeError as exc:
            raise InvalidRequest(
                f"the file is not UTF-8 text (line {self._physical_line})",
                param="file",
                code="invalid_file_encoding",
            ) from exc
        start = 0
        while True:
            end = chunk.find(b"\n", start)
            piece = chunk[start:] if end < 0 else chunk[start:end]
            self._line_bytes += len(piece)
            if self._line_blank and piece.strip(_BLANK):
                self._line_blank = False
            self._check_line_size()
            if end < 0:
                return
            self._end_line()
            start = end + 1

    def finish(self) -> None:
        """The upload ended: count a last line without a newline, and refuse an empty file."""
        try:
            self._decoder.decode(b"", final=True)
        except UnicodeDecodeError as exc:
            raise InvalidRequest(
                "the file ends inside a UTF-8 character", param="file", code="invalid_file_encoding"
            ) from exc
        self._end_line()
        if self.lines == 0:
            raise InvalidRequest("the file has no requests", param="file", code="empty_file")

    def _check_line_size(self) -> None:
        if self._line_bytes > self.max_line_bytes:
            raise LimitExceeded(
                f"line {self._physical_line} is longer than the limit of {self.max_line_bytes} bytes",
                param="file",
                code="line_too_large",
            )

    def _end_line(self) -> None:
        if not self._line_blank:
            self.lines += 1
            if self.lines > self.max_lines:
                raise LimitExceeded(
                    f"the file has more than {self.max_lines} requests", param="file", code="too_many_lines"
                )
        self._physical_line += 1
        self._line_bytes = 0
        self._line_blank = True
