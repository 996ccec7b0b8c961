"""ASGI middleware that checks the request target before routing or authentication look at it:

- longer than BATCHERY_MAX_URL_LENGTH (path and query): 414 ``uri_too_long``;
- a NUL character (``%00``) in the path or the query: 400 ``invalid_request`` (no id, cursor or filter
  holds one, and PostgreSQL cannot even compare text with it);
- a query parameter given more than once: 400 ``repeated_query_parameter`` (no batchery parameter is
  a list, and silently keeping one of the values would hide a caller's mistake).

``REFUSALS`` declares these answers, and the body limit's 413, on every operation of the schema.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qsl

from starlette.types import ASGIApp, Receive, Scope, Send

from domain.jobs.schemas import ErrorBody

REFUSALS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "Malformed request (invalid JSON, a repeated query parameter)"},
    413: {"model": ErrorBody, "description": "The request body is larger than BATCHERY_MAX_BODY_BYTES"},
    414: {"model": ErrorBody, "description": "The URL is longer than BATCHERY_MAX_URL_LENGTH"},
}


class RequestTargetMiddleware:
    def __init__(self, app: ASGIApp, max_length: int) -> None:
        self.app = app
        self.max_length = max_length

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            query = bytes(scope.get("query_string", b""))
            target = len(scope.get("raw_path") or str(scope.get("path", "")).encode()) + len(query)
            if target > self.max_length:
                message = f"the request URL is longer than {self.max_length} characters"
                await _refuse(send, 414, "uri_too_long", message, None)
                return
            if "\x00" in str(scope.get("path", "")) or b"%00" in query or b"\x00" in query:
                message = "the request URL contains a NUL character (%00), which no id or parameter may hold"
                await _refuse(send, 400, "invalid_request", message, None)
                return
            repeated = _repeated_name(query)
            if repeated is not None:
                message = f"the query parameter {repeated!r} is given more than once"
                await _refuse(send, 400, "repeated_query_parameter", message, repeated)
                return
        await self.app(scope, receive, send)


def _repeated_name(query: bytes) -> str | None:
    if b"&" not in query:
        return None
    seen: set[str] = set()
    for name, _value in parse_qsl(query.decode("latin-1"), keep_blank_values=True):
        if name in seen:
            return name
        seen.add(name)
    return None


async def _refuse(send: Send, status: int, code: str, message: str, param: str | None) -> None:
    error = {"code": code, "message": message, "param": param, "type": "invalid_request_error"}
    body = json.dumps({"error": error}).encode()
    headers: list[Any] = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
