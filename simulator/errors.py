"""OpenAI-style errors: one exception that carries the HTTP status and the ``{"error": {...}}`` body.

Every error the simulator answers has the body ``{"error": {"message", "type", "param", "code"}}``, as in
the OpenAPI ``ErrorResponse`` schema. ``error_for_status`` gives the body a hosted API sends for a given
status, used by faults and by ``sim:status=N`` directives.
"""

from __future__ import annotations

from typing import Any

_RATE_LIMIT_DOCS = "Visit https://platform.openai.com/account/rate-limits to learn more."
_QUOTA_MESSAGE = (
    "You exceeded your current quota, please check your plan and billing details. For more information "
    "on this error, read the docs: https://platform.openai.com/docs/guides/error-codes/api-errors."
)
_SERVER_MESSAGE = (
    "The server had an error while processing your request. Sorry about that! You can retry your request."
)

# status: (type, code, message)
_BY_STATUS: dict[int, tuple[str, str | None, str]] = {
    400: ("invalid_request_error", None, "The request was rejected by the simulator (directive)."),
    401: ("invalid_request_error", "invalid_api_key", "Incorrect API key provided."),
    403: (
        "invalid_request_error",
        "unsupported_country_region_territory",
        "Country, region, or territory not supported.",
    ),
    404: ("invalid_request_error", "not_found", "The requested resource was not found."),
    408: ("timeout", None, "Request timed out."),
    409: ("invalid_request_error", "conflict", "The request conflicts with another request. Please retry."),
    413: ("invalid_request_error", "request_too_large", "The request body is too large."),
    422: ("invalid_request_error", None, "The request could not be processed."),
    429: ("requests", "rate_limit_exceeded", "Rate limit reached for requests. " + _RATE_LIMIT_DOCS),
    500: ("server_error", None, _SERVER_MESSAGE),
    502: ("server_error", None, "Bad gateway."),
    503: ("server_error", None, "The engine is currently overloaded, please try again later."),
    504: ("server_error", None, "Gateway timeout."),
}


class ApiError(Exception):
    """An error answer: HTTP status, OpenAI error fields and extra headers."""

    def __init__(
        self,
        status: int,
        message: str,
        error_type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.error_type = error_type
        self.param = param
        self.code = code
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": self.error_type,
                "param": self.param,
                "code": self.code,
            }
        }


def invalid_request(message: str, param: str | None = None, code: str | None = None) -> ApiError:
    """A 400 ``invalid_request_error``."""
    return ApiError(400, message, "invalid_request_error", param, code)


def missing_parameter(param: str) -> ApiError:
    return invalid_request(f"Missing required parameter: '{param}'.", param, "missing_required_parameter")


def invalid_type(param: str, expected: str, value: object) -> ApiError:
    got = _json_type_name(value)
    return invalid_request(
        f"Invalid type for '{param}': expected {expected}, but got {got} instead.", param, "invalid_type"
    )


def invalid_value(param: str, message: str) -> ApiError:
    return invalid_request(message, param, "invalid_value")


def model_not_found(model: str) -> ApiError:
    return ApiError(
        404,
        f"The model `{model}` does not exist or you do not have access to it.",
        "invalid_request_error",
        None,
        "model_not_found",
    )


def missing_api_key() -> ApiError:
    return ApiError(
        401,
        "You didn't provide an API key. You need to provide your API key in an Authorization header using "
        "Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
        "invalid_request_error",
    )


def incorrect_api_key(key: str) -> ApiError:
    shown = (key[:3] + "*" * 4 + key[-4:]) if len(key) > 8 else "*" * 4
    return ApiError(
        401,
        f"Incorrect API key provided: {shown}. You can find your API key at "
        "https://platform.openai.com/account/api-keys.",
        "invalid_request_error",
        None,
        "invalid_api_key",
    )


def insufficient_quota() -> ApiError:
    return ApiError(429, _QUOTA_MESSAGE, "insufficient_quota", None, "insufficient_quota")


def error_for_status(status: int, retry_after: float | None = None) -> ApiError:
    """The error a hosted API answers with ``status``; 429 and 503 may carry retry-after headers."""
    error_type, code, message = _BY_STATUS.get(status, _fallback(status))
    headers: dict[str, str] = {}
    if retry_after is not None:
        headers = retry_after_headers(retry_after)
    return ApiError(status, message, error_type, None, code, headers)


def retry_after_headers(seconds: float) -> dict[str, str]:
    """``retry-after`` in whole seconds (rounded up) and ``retry-after-ms``."""
    millis = max(0, int(-(-seconds * 1000 // 1)))
    return {"retry-after": str(max(0, -(-millis // 1000))), "retry-after-ms": str(millis)}


def rate_limit_message(
    model: str, unit: str, short: str, limit: int, used: int, requested: int, wait: str
) -> str:
    return (
        f"Rate limit reached for {model} in organization org-sim on {unit} per min ({short}): Limit {limit}, "
        f"Used {used}, Requested {requested}. Please try again in {wait}. {_RATE_LIMIT_DOCS}"
    )


def request_too_large_message(model: str, unit: str, short: str, limit: int, requested: int) -> str:
    return (
        f"Request too large for {model} in organization org-sim on {unit} per min ({short}): Limit {limit}, "
        f"Requested {requested}. The input or output tokens must be reduced in order to run successfully. "
        + _RATE_LIMIT_DOCS
    )


def _fallback(status: int) -> tuple[str, str | None, str]:
    if status >= 500:
        return ("server_error", None, _SERVER_MESSAGE)
    return ("invalid_request_error", None, f"The request failed with status {status}.")


def _json_type_name(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a decimal"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"
