"""Just enough ``multipart/form-data`` for ``POST /v1/files``: named parts with their bytes and filename."""

from __future__ import annotations

from dataclasses import dataclass


class MultipartError(ValueError):
    """The body is not the multipart form its content type announced."""


@dataclass(frozen=True, slots=True)
class FormPart:
    """One field of a form: its bytes and, for a file, its filename."""

    data: bytes
    filename: str | None = None


def boundary_of(content_type: str) -> bytes:
    """The boundary of a ``multipart/form-data`` content type; MultipartError for any other type."""
    kind, _, rest = content_type.partition(";")
    if kind.strip().lower() != "multipart/form-data":
        raise MultipartError("expected a multipart/form-data body")
    for item in rest.split(";"):
        name, _, value = item.strip().partition("=")
        if name.lower() == "boundary" and value:
            return value.strip('"').encode("latin-1")
    raise MultipartError("the multipart/form-data content type has no boundary")


def parse_form(body: bytes, boundary: bytes) -> dict[str, FormPart]:
    """The fields of a form (the first part of each name wins)."""
    delimiter = b"--" + boundary
    parts: dict[str, FormPart] = {}
    chunks = body.split(delimiter)
    if len(chunks) < 3:
        raise MultipartError("the multipart body has no parts")
    for chunk in chunks[1:-1]:
        chunk = chunk.removeprefix(b"\r\n").removesuffix(b"\r\n")
        head, sep, data = chunk.partition(b"\r\n\r\n")
        if not sep:
            raise MultipartError("a multipart part has no header")
        name, filename = _disposition(head.decode("utf-8", "replace"))
        if name is not None and name not in parts:
            parts[name] = FormPart(data, filename)
    return parts


def _disposition(head: str) -> tuple[str | None, str | None]:
    """``(name, filename)`` of a part's ``Content-Disposition`` header."""
    for line in head.split("\r\n"):
        header, _, value = line.partition(":")
        if header.strip().lower() != "content-disposition":
            continue
        params: dict[str, str] = {}
        for item in value.split(";")[1:]:
            key, _, raw = item.strip().partition("=")
            params[key.lower()] = raw.strip().strip('"')
        return params.get("name"), params.get("filename")
    return None, None
