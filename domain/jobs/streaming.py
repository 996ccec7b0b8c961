"""``stream: true`` on a job: which kinds may ask for it, and the body the upstream is sent.

Chat, vision and Responses jobs may ask for a stream. The worker then calls the upstream streamed,
with ``stream_options.include_usage`` on chat so the last chunk carries the exact usage, relays each
event to whoever waits for it (the drop-in endpoints' SSE answer), and stores the stream aggregated
into the object a non-streamed call answers (``domain.jobs.stream_aggregate``). A job's record says
so: its ``stream`` field is ``"aggregated"`` (``None`` when no stream was asked for).

Embeddings and images cannot stream: ``stream`` there answers 422 ``streaming_unsupported`` at
submission, before anything is stored or sent (a stream sent as is would be read as a malformed
answer and retried as a new paid call).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from domain.errors import InvalidRequest

STREAMING_UNSUPPORTED = "streaming_unsupported"
STREAMING_KINDS = frozenset({"chat", "vision", "response"})
AGGREGATED = "aggregated"


def stream_requested(body: Mapping[str, Any]) -> bool:
    return body.get("stream") is True


def stream_mode(kind: str, body: Mapping[str, Any]) -> str | None:
    """How a job's stream is handled, as its record shows it: ``"aggregated"`` or None."""
    return AGGREGATED if kind in STREAMING_KINDS and stream_requested(body) else None


def refuse_streaming(body: Mapping[str, Any], kind: str, prefix: str = "request") -> None:
    """Raise InvalidRequest (code ``streaming_unsupported``) when a kind that cannot stream asks to
    (``kind`` "batch": a batch's line, whose answer goes whole into the output file, as OpenAI's)."""
    value = body.get("stream")
    if value is None or value is False or kind in STREAMING_KINDS:
        return
    param = f"{prefix}.stream"
    what = "a batch's lines" if kind == "batch" else f"{kind} jobs"
    raise InvalidRequest(
        f"{param}: {what} cannot stream; leave out 'stream' (or set it to false). Chat, vision and "
        "Responses jobs can",
        param=param,
        code=STREAMING_UNSUPPORTED,
    )


def streamed_body(kind: str, body: Mapping[str, Any]) -> dict[str, Any]:
    """The body sent upstream for a streamed job: chat asks for the usage chunk."""
    if kind == "response":
        return dict(body)
    options = body.get("stream_options")
    merged = {**(options if isinstance(options, dict) else {}), "include_usage": True}
    return {**body, "stream_options": merged}


def client_wants_usage(body: Mapping[str, Any]) -> bool:
    """Whether the caller asked for chat's final usage chunk (batchery always asks the upstream)."""
    options = body.get("stream_options")
    return isinstance(options, dict) and options.get("include_usage") is True
