"""ASGI middleware that refuses a request target (path and query) longer than BATCHERY_MAX_URL_LENGTH
with 414 ``uri_too_long``, before routing or authentication look at it."""

from __future__ import annotations

import json
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send


class UrlLengthMiddleware:
    def __init__(self, app: ASGIApp, max_length: int) -> None:
        self.app = app
        self.max_length = max_length

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            target = len(scope.get("raw_path") or str(scope.get("path", "")).encode())
            target += len(scope.get("query_string", b""))
            if target > self.max_length:
                await self._refuse(send)
                return
        await self.app(scope, receive, send)

    async def _refuse(self, send: Send) -> None:
        body = json.dumps(
            {
                "error": {
                    "code": "uri_too_long",
                    "message": f"the request URL is longer than {self.max_length} characters",
                    "param": None,
                    "type": "invalid_request_error",
                }
            }
        ).encode()
        headers: list[Any] = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ]
        await send({"type": "http.response.start", "status": 414, "headers": headers})
        await send({"type": "http.response.body", "body": body})
