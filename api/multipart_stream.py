"""Reading a ``multipart/form-data`` upload as it streams, without buffering the file part.

``read_multipart`` feeds the request body to python-multipart's streaming parser and hands each piece
of the file part to ``on_file`` as soon as it is parsed; the other fields (small text values) are
collected and returned. A body that is not multipart, is cut short, or holds an oversized field is
refused with a 4xx.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header

from domain.errors import InvalidRequest, PayloadTooLarge

MAX_FIELD_BYTES = 4096
MAX_FIELDS = 16


@dataclass
class Form:
    """The text fields of a form, and what was seen of its file part."""

    fields: dict[str, str] = field(default_factory=dict)
    filename: str | None = None
    file_seen: bool = False


@dataclass
class _Part:
    name: str = ""
    filename: str | None = None
    is_file: bool = False
    value: bytearray = field(default_factory=bytearray)


class _Collector:
    """Parser callbacks: builds the current part's headers, keeps fields, queues file data."""

    def __init__(self, file_field: str, form: Form) -> None:
        self.file_field = file_field
        self.form = form
        self.part = _Part()
        self.header_name = bytearray()
        self.header_value = bytearray()
        self.headers: dict[str, bytes] = {}
        self.file_data: list[bytes] = []
        self.ended = False

    def callbacks(self) -> dict[str, Callable[..., None]]:
        return {
            "on_part_begin": self.on_part_begin,
            "on_header_field": lambda data, start, end: self.header_name.extend(data[start:end]),
            "on_header_value": lambda data, start, end: self.header_value.extend(data[start:end]),
            "on_header_end": self.on_header_end,
            "on_headers_finished": self.on_headers_finished,
            "on_part_data": self.on_part_data,
            "on_part_end": self.on_part_end,
            "on_end": self.on_end,
        }

    def on_part_begin(self) -> None:
        self.part = _Part()
        self.headers = {}

    def on_header_end(self) -> None:
        self.headers[bytes(self.header_name).decode("latin-1").lower()] = bytes(self.header_value)
        self.header_name.clear()
        self.header_value.clear()

    def on_headers_finished(self) -> None:
        _, options = parse_options_header(self.headers.get("content-disposition", b""))
        self.part.name = options.get(b"name", b"").decode("utf-8", "replace")
        raw_filename = options.get(b"filename")
        self.part.filename = raw_filename.decode("utf-8", "replace") if raw_filename is not None else None
        self.part.is_file = self.part.name == self.file_field
        if self.part.is_file:
            if self.form.file_seen:
                raise InvalidRequest(f"only one '{self.file_field}' part is allowed", param=self.file_field)
            self.form.file_seen = True
            self.form.filename = self.part.filename
        elif len(self.form.fields) >= MAX_FIELDS:
            raise InvalidRequest(f"the form has more than {MAX_FIELDS} fields", param=self.part.name)

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self.part.is_file:
            self.file_data.append(bytes(data[start:end]))
            return
        self.part.value.extend(data[start:end])
        if len(self.part.value) > MAX_FIELD_BYTES:
            raise InvalidRequest(
                f"the form field {self.part.name!r} is longer than {MAX_FIELD_BYTES} bytes",
                param=self.part.name,
            )

    def on_part_end(self) -> None:
        if not self.part.is_file:
            self.form.fields[self.part.name] = bytes(self.part.value).decode("utf-8", "replace")

    def on_end(self) -> None:
        self.ended = True


async def read_multipart(
    content_type: str | None,
    body: AsyncIterator[bytes],
    *,
    file_field: str,
    on_file: Callable[[bytes], Awaitable[None]],
    max_body_bytes: int,
    form: Form | None = None,
) -> Form:
    """Parse the body; ``on_file`` gets the file part's bytes in order, as they arrive. The fields
    fill ``form`` (a new one if None) as their parts end, so ``on_file`` can look at earlier ones."""
    media_type, options = parse_options_header(content_type)
    boundary = options.get(b"boundary")
    if media_type != b"multipart/form-data" or not boundary:
        raise InvalidRequest(
            "the upload must be multipart/form-data with a boundary", param=None, code="invalid_content_type"
        )
    form = form if form is not None else Form()
    collector = _Collector(file_field, form)
    try:
        parser = MultipartParser(boundary, collector.callbacks())  # type: ignore[arg-type]
    except FormParserError as exc:
        raise InvalidRequest("the multipart boundary is invalid", code="invalid_multipart") from exc
    received = 0
    async for chunk in body:
        received += len(chunk)
        if received > max_body_bytes:
            raise PayloadTooLarge(f"the upload is larger than {max_body_bytes} bytes", code="file_too_large")
        try:
            parser.write(chunk)
        except FormParserError as exc:
            raise InvalidRequest("the multipart body is malformed", code="invalid_multipart") from exc
        pieces, collector.file_data = collector.file_data, []
        for piece in pieces:
            await on_file(piece)
    if not collector.ended:
        raise InvalidRequest("the multipart body ended early", code="invalid_multipart")
    return form
