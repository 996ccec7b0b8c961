"""OpenAI's Files API for batch input and output, kept in memory (the simulator is a test double).

=====================================  ==================================================================
``POST /v1/files``                     multipart: ``file`` and ``purpose`` (``batch``, or another of the
                                       spec's purposes), optional ``expires_after[anchor]=created_at`` and
                                       ``expires_after[seconds]`` (3600 to 2592000); answers the file object
``GET /v1/files``                      ``?purpose=&order=asc|desc&after=&limit=`` (limit 1 to 10000, default
                                       10000, newest first): ``{object:"list", data, first_id, last_id,
                                       has_more}``
``GET /v1/files/{id}``                 the file object
``GET /v1/files/{id}/content``         the raw bytes
``DELETE /v1/files/{id}``              ``{id, object:"file", deleted:true}``
=====================================  ==================================================================

A file object is ``{id:"file-...", object:"file", bytes, created_at, filename, purpose,
status:"processed", expires_at, status_details:null}``; ``batch`` files expire 30 days after upload
unless told otherwise (the date is reported, not enforced). A file larger than ``--files-max-bytes``
(default 64 MiB) is refused with 413. The JSONL itself is checked when a batch is created from it
(``simulator.batch_input``), as OpenAI does.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

from simulator.asgi import BodyTooLargeError, Receive, Scope, Send, read_body, send_bytes, send_json
from simulator.errors import ApiError, invalid_request, missing_parameter
from simulator.multipart import MultipartError, boundary_of, parse_form

UPLOAD_PURPOSES = ("assistants", "batch", "fine-tune", "vision", "user_data", "evals")
DEFAULT_BATCH_FILE_SECONDS = 30 * 24 * 3600
_OCTET = (b"content-type", b"application/octet-stream")
_MULTIPART_OVERHEAD = 64 * 1024


@dataclass(slots=True)
class StoredFile:
    """One file held by the simulator."""

    id: str
    filename: str
    purpose: str
    content: bytes
    created_at: int
    expires_at: int | None

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "file",
            "bytes": len(self.content),
            "created_at": self.created_at,
            "expires_at": self.expires_at,
            "filename": self.filename,
            "purpose": self.purpose,
            "status": "processed",
            "status_details": None,
        }


def file_not_found(file_id: str) -> ApiError:
    return ApiError(404, f"No such File object: {file_id}", "invalid_request_error", "id", None)


class FileStore:
    """The files of one simulator, in upload order."""

    def __init__(self, wall_clock: Callable[[], float]) -> None:
        self._clock = wall_clock
        self._files: dict[str, StoredFile] = {}

    def add(
        self, filename: str, purpose: str, content: bytes, expires_after: int | None = None
    ) -> StoredFile:
        """Store ``content``; ``expires_after`` seconds (default: 30 days for batch files, else never)."""
        now = int(self._clock())
        if expires_after is None and purpose in ("batch", "batch_output"):
            expires_after = DEFAULT_BATCH_FILE_SECONDS
        expires_at = now + expires_after if expires_after is not None else None
        stored = StoredFile("file-" + os.urandom(12).hex(), filename, purpose, content, now, expires_at)
        self._files[stored.id] = stored
        return stored

    def get(self, file_id: str) -> StoredFile:
        stored = self._files.get(file_id)
        if stored is None:
            raise file_not_found(file_id)
        return stored

    def delete(self, file_id: str) -> None:
        self.get(file_id)
        del self._files[file_id]

    def __len__(self) -> int:
        return len(self._files)

    def page(self, purpose: str | None, order: str, after: str | None, limit: int) -> dict[str, Any]:
        """One page of the list answer."""
        files = [stored for stored in self._files.values() if purpose is None or stored.purpose == purpose]
        if order == "desc":
            files.reverse()
        return list_page([stored.as_json() for stored in files], after, limit)


def list_page(objects: list[dict[str, Any]], after: str | None, limit: int) -> dict[str, Any]:
    """``{object:"list", data, first_id, last_id, has_more}`` of the objects after the one ``after`` names."""
    if after is not None:
        ids = [item["id"] for item in objects]
        objects = objects[ids.index(after) + 1 :] if after in ids else []
    data = objects[:limit]
    return {
        "object": "list",
        "data": data,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
        "has_more": len(objects) > limit,
    }


def query_limit(query: dict[str, list[str]], default: int, highest: int) -> int:
    """The ``limit`` query parameter, 1 to ``highest``; a 400 otherwise."""
    raw = query.get("limit", [str(default)])[0]
    try:
        limit = int(raw)
    except ValueError:
        raise invalid_request(f"Invalid 'limit': expected an integer, got '{raw}'.", "limit") from None
    if not 1 <= limit <= highest:
        message = f"Invalid 'limit': must be between 1 and {highest}, got {limit}."
        raise invalid_request(message, "limit", "integer_out_of_range")
    return limit


def query_of(scope: Scope) -> dict[str, list[str]]:
    return parse_qs(scope.get("query_string", b"").decode("latin-1"))


async def serve_files(
    store: FileStore, max_bytes: int, method: str, rest: str, scope: Scope, receive: Receive, send: Send
) -> None:
    """Answer ``/v1/files`` (``rest`` is what follows it: ``""``, ``"/{id}"`` or ``"/{id}/content"``)."""
    parts = [part for part in rest.split("/") if part]
    if not parts and method == "POST":
        stored = await _upload(store, max_bytes, scope, receive)
        await send_json(send, 200, stored.as_json())
    elif not parts and method == "GET":
        query = query_of(scope)
        order = query.get("order", ["desc"])[0]
        if order not in ("asc", "desc"):
            raise invalid_request(f"Invalid 'order': expected asc or desc, got '{order}'.", "order")
        after = query.get("after", [None])[0]
        purpose = query.get("purpose", [None])[0]
        await send_json(send, 200, store.page(purpose, order, after, query_limit(query, 10000, 10000)))
    elif len(parts) == 1 and method == "GET":
        await send_json(send, 200, store.get(parts[0]).as_json())
    elif len(parts) == 1 and method == "DELETE":
        store.delete(parts[0])
        await send_json(send, 200, {"id": parts[0], "object": "file", "deleted": True})
    elif len(parts) == 2 and parts[1] == "content" and method == "GET":
        await send_bytes(send, 200, store.get(parts[0]).content, content_type=_OCTET)
    else:
        path = scope["path"]
        raise ApiError(404 if len(parts) > 2 else 405, f"Invalid URL ({method} {path})")


async def _upload(store: FileStore, max_bytes: int, scope: Scope, receive: Receive) -> StoredFile:
    content_type = dict(scope["headers"]).get(b"content-type", b"").decode("latin-1")
    try:
        boundary = boundary_of(content_type)
        form = parse_form(await read_body(receive, max_bytes + _MULTIPART_OVERHEAD), boundary)
    except MultipartError as exc:
        raise invalid_request(f"Invalid multipart body: {exc}.") from None
    except BodyTooLargeError:
        raise _too_large(max_bytes) from None
    upload = form.get("file")
    if upload is None:
        raise missing_parameter("file")
    if len(upload.data) > max_bytes:
        raise _too_large(max_bytes)
    purpose_part = form.get("purpose")
    if purpose_part is None:
        raise missing_parameter("purpose")
    purpose = purpose_part.data.decode("utf-8", "replace").strip()
    if purpose not in UPLOAD_PURPOSES:
        message = f"Invalid 'purpose': expected one of {', '.join(UPLOAD_PURPOSES)}, got '{purpose}'."
        raise invalid_request(message, "purpose", "invalid_value")
    filename = upload.filename or "upload"
    if purpose == "batch" and not filename.endswith(".jsonl"):
        message = "Invalid file format for Batch API. Must be .jsonl"
        raise invalid_request(message, "file", "invalid_file_format")
    return store.add(filename, purpose, upload.data, _expires_after(form))


def _expires_after(form: dict[str, Any]) -> int | None:
    anchor = form.get("expires_after[anchor]")
    seconds = form.get("expires_after[seconds]")
    if anchor is None and seconds is None:
        return None
    if anchor is None or anchor.data.strip() != b"created_at":
        raise invalid_request("Invalid 'expires_after[anchor]': expected created_at.", "expires_after.anchor")
    try:
        value = int(seconds.data) if seconds is not None else -1
    except ValueError:
        value = -1
    if not 3600 <= value <= 2_592_000:
        message = "Invalid 'expires_after[seconds]': must be an integer between 3600 and 2592000."
        raise invalid_request(message, "expires_after.seconds")
    return value


def _too_large(max_bytes: int) -> ApiError:
    message = f"The file is larger than the simulator accepts ({max_bytes} bytes)."
    return ApiError(413, message, "invalid_request_error", "file", "file_too_large")
