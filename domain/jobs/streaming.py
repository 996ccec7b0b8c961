"""Streaming is refused at submission: a job's result is one stored object, and an upstream's SSE answer
is not one. A request asking for it gets 422 ``streaming_unsupported`` naming the parameter, before
anything is stored or sent upstream (a stream sent as is would be read as a malformed answer, and
retried as a new paid call)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from domain.errors import InvalidRequest

STREAMING_UNSUPPORTED = "streaming_unsupported"


def refuse_streaming(body: Mapping[str, Any], prefix: str = "request") -> None:
    """Raise InvalidRequest (code ``streaming_unsupported``) when ``body`` asks for a stream."""
    value = body.get("stream")
    if value is None or value is False:
        return
    param = f"{prefix}.stream"
    raise InvalidRequest(
        f"{param}: streaming is not supported; a job's result is stored whole. Leave out 'stream' "
        "(or set it to false) and read the result from the job",
        param=param,
        code=STREAMING_UNSUPPORTED,
    )
