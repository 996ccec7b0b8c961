"""The SSE answer of a drop-in call with ``stream: true``: the upstream's events, relayed as they come.

The worker that holds the call appends each event to the job's Redis stream (``workers.stream_relay``);
this reads them with ``XREAD BLOCK`` and writes them out as ``text/event-stream``. Before the first
event the answer is not committed: a retry of the upstream call (a 429, a 5xx, a lost connection)
stays invisible, and a job that ends without any event (an upstream 400, a cancel) is answered as a
non-streamed call would be, with the upstream's status and error body. Once streaming, an upstream
failure arrives as an error event relayed by the worker, and the stream ends.

Chat's last chunk with the usage (``stream_options.include_usage``, which batchery always asks the
upstream for, so the stored usage is exact) is passed on only when the caller asked for it, so code
that reads ``chunk.choices[0]`` of every chunk keeps working. Chat streams end with ``data: [DONE]``;
Responses streams end after their final event, as OpenAI's do.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from domain.jobs.stream_aggregate import error_event
from domain.storage.redis_keys import RedisKeys

BLOCK_MS = 1000
"""How long one ``XREAD`` blocks; between reads the job's end is checked, so a job that ended without
relaying (or a relay that broke) is noticed within this."""
Entry = tuple[bytes, dict[bytes, bytes]]


class StreamReader:
    """One Redis connection pool for every streaming call of the process."""

    def __init__(self, redis_url: str, prefix: str) -> None:
        self._client = aioredis.Redis.from_url(redis_url, socket_connect_timeout=5)
        self._keys = RedisKeys(prefix)

    async def read(self, job_id: str, after: bytes, block_ms: int | None = BLOCK_MS) -> list[Entry]:
        """Entries after ``after``, waiting up to ``block_ms`` for one (None: not at all)."""
        key = self._keys.job_stream(job_id)
        answer = await self._client.xread({key: after}, count=256, block=block_ms)
        return [(entry_id, fields) for _, entries in answer or () for entry_id, fields in entries]

    async def close(self) -> None:
        await self._client.aclose()  # type: ignore[attr-defined]  # redis-py >= 5 (the stubs lag)


class RelayedStream:
    """A streaming call's relay, read from its first event to its end."""

    def __init__(self, reader: StreamReader, job_id: str, *, kind: str, wants_usage: bool) -> None:
        self.reader = reader
        self.job_id = job_id
        self.kind = kind
        self.wants_usage = wants_usage
        self.after = b"0"
        self.pending: list[Entry] = []

    async def first(self, ended: asyncio.Future[Any], timeout: float) -> bool:
        """Wait until the first event (True), or the job ended with none or ``timeout`` passed (False)."""
        deadline = time.monotonic() + timeout
        while True:
            block = int(min(BLOCK_MS, max(1.0, (deadline - time.monotonic()) * 1000)))
            try:
                entries = await self.reader.read(self.job_id, self.after, block)
            except RedisError:
                entries = []
                await asyncio.sleep(block / 1000)
            if entries:
                self.pending = entries
                self.after = entries[-1][0]
                return True
            if ended.done() or time.monotonic() >= deadline:
                # one last look: the events may have landed just before the job's end was announced
                with contextlib.suppress(RedisError):
                    self.pending = await self.reader.read(self.job_id, self.after, None)
                if self.pending:
                    self.after = self.pending[-1][0]
                    return True
                return False

    async def events(self, idle_timeout: float) -> AsyncIterator[bytes]:
        """The SSE bytes, from the first event to the end."""
        entries, last_seen = self.pending, time.monotonic()
        while True:
            for _, fields in entries:
                if b"end" in fields:
                    if self.kind != "response":
                        yield b"data: [DONE]\n\n"
                    return
                chunk = self._render(fields)
                if chunk:
                    yield chunk
            if entries:
                last_seen = time.monotonic()
            elif time.monotonic() - last_seen > idle_timeout:
                yield self._timeout_event()
                return
            try:
                entries = await self.reader.read(self.job_id, self.after)
            except RedisError:
                entries = []
                await asyncio.sleep(BLOCK_MS / 1000)
            if entries:
                self.after = entries[-1][0]

    def _render(self, fields: dict[bytes, bytes]) -> bytes:
        data = fields.get(b"d", b"")
        if not self.wants_usage and self.kind != "response" and _usage_only(data):
            return b""
        name = fields.get(b"e")
        head = b"event: " + name + b"\n" if name else b""
        return head + b"data: " + data + b"\n\n"

    def _timeout_event(self) -> bytes:
        message = "the upstream's stream stalled; the job goes on and its result is kept"
        name, data = error_event(self.kind, message, "stream_stalled")
        return (f"event: {name}\n" if name else "").encode() + b"data: " + data.encode() + b"\n\n"


def _usage_only(data: bytes) -> bool:
    """Whether a chat chunk is the usage chunk (no choices), which only include_usage asks for."""
    if b'"choices":[]' not in data.replace(b" ", b""):
        return False
    try:
        chunk = json.loads(data)
    except ValueError:
        return False
    return isinstance(chunk, dict) and chunk.get("choices") == [] and isinstance(chunk.get("usage"), dict)


def replayed_events(kind: str, result: dict[str, Any], wants_usage: bool) -> list[bytes]:
    """A stored result as the SSE events of its stream, for a streamed call whose job ended before any
    event was relayed (a provider that answered the whole object, or a job that ended meanwhile)."""
    if kind == "response":
        event = {"type": "response.completed", "sequence_number": 0, "response": result}
        return [b"event: response.completed\ndata: " + json.dumps(event).encode() + b"\n\n"]
    head: dict[str, Any] = {
        k: result[k] for k in ("id", "created", "model", "system_fingerprint") if k in result
    }
    head["object"] = "chat.completion.chunk"
    deltas: list[dict[str, Any]] = []
    ends: list[dict[str, Any]] = []
    for choice in result.get("choices") or ():
        message = dict(choice.get("message") or {})
        message.pop("annotations", None)
        if message.get("tool_calls"):
            message["tool_calls"] = [{"index": i, **call} for i, call in enumerate(message["tool_calls"])]
        index = choice.get("index", 0)
        deltas.append({"index": index, "delta": message, "logprobs": None, "finish_reason": None})
        ends.append(
            {"index": index, "delta": {}, "logprobs": None, "finish_reason": choice.get("finish_reason")}
        )
    chunks: list[dict[str, Any]] = [{**head, "choices": deltas}, {**head, "choices": ends}]
    if wants_usage and isinstance(result.get("usage"), dict):
        chunks.append({**head, "choices": [], "usage": result["usage"]})
    return [b"data: " + json.dumps(chunk).encode() + b"\n\n" for chunk in chunks] + [b"data: [DONE]\n\n"]
