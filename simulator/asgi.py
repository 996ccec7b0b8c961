"""The little ASGI plumbing the simulator needs: reading a body, sending a whole response or an event stream.

The simulator speaks raw ASGI rather than through a framework so that it is never the bottleneck of a
benchmark.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Awaitable, Callable, Iterable, MutableMapping, Sequence
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

JSON_TYPE = (b"content-type", b"application/json")
SSE_TYPE = (b"content-type", b"text/event-stream; charset=utf-8")
MAX_BODY_BYTES = 64 * 1024 * 1024


class BodyTooLargeError(Exception):
    """The request body is larger than the simulator accepts."""


async def read_body(receive: Receive, limit: int = MAX_BODY_BYTES) -> bytes:
    """The whole request body; BodyTooLargeError past ``limit`` bytes."""
    message = await receive()
    body = message.get("body", b"")
    if not message.get("more_body", False):
        return bytes(body)
    chunks = [body]
    size = len(body)
    while message.get("more_body", False):
        message = await receive()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyTooLargeError
        chunks.append(chunk)
    return b"".join(chunks)


def new_request_id() -> str:
    return "req_" + os.urandom(12).hex()


def header_values(scope: Scope, names: frozenset[bytes]) -> dict[bytes, str]:
    """The request headers among ``names`` (lower-case), decoded as latin-1."""
    return {name: value.decode("latin-1") for name, value in scope["headers"] if name in names}


def dumps(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


async def send_bytes(
    send: Send,
    status: int,
    body: bytes,
    headers: Iterable[tuple[str, str]] = (),
    content_type: tuple[bytes, bytes] = JSON_TYPE,
    request_id: str | None = None,
) -> None:
    """Send a whole response with content type and length, ``x-request-id`` (new unless given) and headers."""
    raw = [
        content_type,
        (b"content-length", str(len(body)).encode()),
        (b"x-request-id", (request_id or new_request_id()).encode()),
    ]
    raw.extend((name.encode("latin-1"), value.encode("latin-1")) for name, value in headers)
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


async def send_event_stream(
    send: Send,
    receive: Receive,
    frames: Sequence[bytes],
    headers: Iterable[tuple[str, str]],
    request_id: str,
    pause_seconds: float,
) -> bool:
    """Send a 200 ``text/event-stream`` answer frame by frame, ``pause_seconds`` apart.

    Returns False when the client went away before the last frame (the rest is then not sent).
    """
    raw = [SSE_TYPE, (b"x-request-id", request_id.encode())]
    raw.extend((name.encode("latin-1"), value.encode("latin-1")) for name, value in headers)
    gone = asyncio.ensure_future(_disconnect(receive))
    try:
        await send({"type": "http.response.start", "status": 200, "headers": raw})
        for position, frame in enumerate(frames):
            if position and pause_seconds > 0:
                await asyncio.sleep(pause_seconds)
            if gone.done():
                return False
            await send({"type": "http.response.body", "body": frame, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        return True
    finally:
        gone.cancel()


async def _disconnect(receive: Receive) -> None:
    """Returns once the client has gone (the request body has been read already)."""
    while (await receive())["type"] != "http.disconnect":
        pass


async def send_json(send: Send, status: int, value: object, headers: Iterable[tuple[str, str]] = ()) -> None:
    await send_bytes(send, status, dumps(value), headers)
