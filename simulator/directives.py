"""Per-request directives: a test tells the simulator how to answer one call.

Where a directive is read:

- the request body's ``user`` field, on every endpoint (``"user": "sim:status=500;times=2"``);
- for ``/v1/responses`` also ``metadata.sim`` (``"metadata": {"sim": "status=503"}``, the ``sim:``
  prefix optional there), which wins over ``user``.

A ``user`` value that does not start with ``sim:`` is an ordinary end-user id and is ignored. Grammar::

    directives  := "sim:" item (";" item)*
    item        := "status=" CODE        answer CODE (400..599) with an OpenAI-style error body
                 | "times=" N            with status: only the first N calls carrying this exact
                                         directive text fail, later ones succeed
                 | "retry_after=" S      send retry-after / retry-after-ms headers (S seconds) on the error
                 | "latency=" MS         answer after MS milliseconds instead of the configured latency
                 | "hang" ["=" S]        stall S seconds (default: --hang-seconds), then answer normally
                 | "malformed"           answer 200 with a body that is not JSON
                 | "quota"               answer 429 insufficient_quota
                 | "stream_error_after=" N  a streamed call (``stream: true``) fails after N content or
                                         argument deltas: the stream sends OpenAI's mid-stream error
                                         event and closes without [DONE] (after the last delta when
                                         there are fewer); ignored by calls that do not stream

``status``, ``quota``, ``hang``, ``latency`` and ``malformed`` apply to streamed calls too: errors answer
before the stream starts, ``latency`` sets the time to the first event, and a malformed stream sends half
of its first event and closes. Spaces around items are allowed. An item the grammar does not know is a 400
naming the field. Forced errors answer before the rate limiter is consulted, so they neither take nor wait
for budget.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from simulator.errors import ApiError, invalid_request

PREFIX = "sim:"
_MAX_TRACKED = 100_000


@dataclass(frozen=True, slots=True)
class Directive:
    """The parsed instructions of one call."""

    text: str
    status: int | None = None
    times: int | None = None
    retry_after: float | None = None
    latency_ms: float | None = None
    hang: bool = False
    hang_seconds: float | None = None
    malformed: bool = False
    quota: bool = False
    stream_error_after: int | None = None


def parse_directive(text: str, param: str = "user") -> Directive:
    """Parse ``sim:...`` (the prefix is optional); an unknown or malformed item raises a 400 ApiError."""
    body = text[len(PREFIX) :] if text.startswith(PREFIX) else text
    values: dict[str, Any] = {}
    for raw_item in body.split(";"):
        item = raw_item.strip()
        if not item:
            continue
        name, sep, value = (part.strip() for part in item.partition("="))
        values.update(_parse_item(name, value if sep else None, text, param))
    if values.get("times") is not None and values.get("status") is None:
        raise _bad(text, param, "times needs a status")
    return Directive(text=text, **values)


def _parse_item(name: str, value: str | None, text: str, param: str) -> dict[str, Any]:
    flags = {"malformed": "malformed", "quota": "quota"}
    if name in flags and value is None:
        return {flags[name]: True}
    if name == "hang":
        return {"hang": True, "hang_seconds": None if value is None else _number(value, text, param, name)}
    if value is None:
        raise _bad(text, param, f"unknown item {name!r}")
    if name == "status":
        status = _integer(value, text, param, name)
        if not 400 <= status <= 599:
            raise _bad(text, param, "status must be between 400 and 599")
        return {"status": status}
    if name == "times":
        return {"times": _integer(value, text, param, name)}
    if name == "retry_after":
        return {"retry_after": _number(value, text, param, name)}
    if name == "latency":
        return {"latency_ms": _number(value, text, param, name)}
    if name == "stream_error_after":
        return {"stream_error_after": _integer(value, text, param, name)}
    raise _bad(text, param, f"unknown item {name!r}")


def directive_text(body: Mapping[str, Any], endpoint: str) -> tuple[str, str] | None:
    """``(text, field)`` of the directive carried by a request body, or None."""
    if endpoint == "responses":
        metadata = body.get("metadata")
        if isinstance(metadata, Mapping):
            sim = metadata.get("sim")
            if isinstance(sim, str) and sim.strip():
                return sim, "metadata.sim"
    user = body.get("user")
    if isinstance(user, str) and user.startswith(PREFIX):
        return user, "user"
    return None


@dataclass
class FailureCounter:
    """Counts calls per exact directive text, for ``times=N``."""

    _calls: dict[str, int] = field(default_factory=dict)

    def should_fail(self, directive: Directive) -> bool:
        """Whether this call of a ``status`` directive fails (always, or within its first ``times``)."""
        if directive.status is None:
            return False
        if directive.times is None:
            return True
        calls = self._calls.get(directive.text, 0) + 1
        if calls == 1 and len(self._calls) >= _MAX_TRACKED:
            del self._calls[next(iter(self._calls))]
        self._calls[directive.text] = calls
        return calls <= directive.times

    def clear(self) -> None:
        self._calls.clear()


def _integer(value: str, text: str, param: str, name: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise _bad(text, param, f"{name} must be an integer") from None
    if number < 0:
        raise _bad(text, param, f"{name} must not be negative")
    return number


def _number(value: str, text: str, param: str, name: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise _bad(text, param, f"{name} must be a number") from None
    if not 0 <= number < float("inf"):
        raise _bad(text, param, f"{name} must be a finite number, not negative")
    return number


def _bad(text: str, param: str, reason: str) -> ApiError:
    return invalid_request(f"Invalid simulator directive {text!r}: {reason}.", param, "invalid_value")
