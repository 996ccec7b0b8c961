"""How many output tokens one job may ask for: no more than its model can write.

``max_tokens`` and ``max_completion_tokens`` (chat, vision) and ``max_output_tokens`` (Responses API)
are reserved from the model's shared token bucket before the call, so an unbounded value would let one
job take every tenant's budget for hours. Each is refused with 422 ``max_tokens_too_large`` (``param``
naming the field) above the model's ``max_output_tokens`` or ``context_window`` from the tiers file,
and, for a model without them, above ``config.tiers.HARD_MAX_OUTPUT_TOKENS``.

A chat, vision or Responses job whose prompt plus the reply it asks room for exceeds the model's
``context_window`` is refused with 422 ``context_length_exceeded`` and the counts, before it costs an
upstream round trip and a 400.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from config.tiers import HARD_MAX_OUTPUT_TOKENS, ModelLimits
from domain.errors import LimitExceeded
from domain.tokens.estimates import window_need

OUTPUT_TOKEN_FIELDS = ("max_tokens", "max_completion_tokens", "max_output_tokens")
MAX_STORED_ESTIMATE = 2**31 - 1
"""A job's estimate is stored in a 32-bit integer column."""


def stored_estimate(tokens: int) -> int:
    """``tokens`` as stored with the job: within the column's range on every database."""
    return max(0, min(tokens, MAX_STORED_ESTIMATE))


def output_token_limit(limits: ModelLimits | None) -> int:
    """The most output tokens a job for a model with ``limits`` may ask for."""
    return limits.output_token_limit if limits is not None else HARD_MAX_OUTPUT_TOKENS


def check_output_tokens(
    request: Mapping[str, Any], model: str, limits: ModelLimits | None, *, param: str = "request"
) -> None:
    """Raise LimitExceeded when a field of ``request`` asks for more output than ``model`` can give."""
    limit = output_token_limit(limits)
    for field in OUTPUT_TOKEN_FIELDS:
        asked = _number(request.get(field))
        if asked is not None and asked > limit:
            raise LimitExceeded(
                f"{param}.{field}: {field} is {_shown(asked)}; model {model!r} writes at most {limit} "
                "tokens in one reply",
                param=f"{param}.{field}",
                code="max_tokens_too_large",
            )


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if isinstance(value, float) else value


def _shown(value: float) -> str:
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return str(int(value))
    return str(value)


def check_context_window(
    kind: str, request: Mapping[str, Any], model: str, limits: ModelLimits | None, *, param: str = "request"
) -> None:
    """Raise LimitExceeded (``context_length_exceeded``) when the prompt and the reply asked for do not
    fit ``model``'s context window. Models without a known window are not checked."""
    window = limits.context_window if limits is not None else None
    if window is None:
        return
    need = window_need(kind, request)
    if need is None or need.total <= window:
        return
    asked = (
        f" and asks for up to {need.completion_tokens} completion tokens" if need.completion_tokens else ""
    )
    raise LimitExceeded(
        f"{param}: model {model!r} has a context window of {window} tokens; the request holds "
        f"{need.prompt_tokens} prompt tokens{asked} ({need.total} in all)",
        param=f"{param}.messages" if kind != "response" else f"{param}.input",
        code="context_length_exceeded",
    )
