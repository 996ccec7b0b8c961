"""batchery's one exception tree. The class docstring is the default message.

::

    BatcheryError                       (config.errors; the root)
    ├── ConfigError                     invalid settings or tiers file (config.errors)
    └── ServiceError                    an error a caller can act on; carries an HTTP status and a code
        ├── InvalidRequest              422: the body does not fit the contract
        │   ├── UnknownModel            422: no tier serves the model
        │   ├── IdempotencyKeyReused    422: same key, different body
        │   ├── InvalidWebhookUrl       422: the webhook URL is malformed or not public (with the reason)
        │   └── LimitExceeded           422: an input is over a configured limit (code names which)
        ├── Unauthenticated             401: missing, invalid, revoked or expired API key
        ├── PermissionDenied            403: the key lacks the scope the route needs
        ├── TooManyRequests             429: e.g. the tenant's queue is full; carries Retry-After
        ├── NotFound                    404: no such object (or not the caller's)
        ├── Conflict                    409: the object is not in a state that allows this
        ├── PayloadTooLarge             413
        └── Unavailable                 503: a backing service (database, broker) is down

Third-party errors are translated where they enter, with ``raise X from exc``.
"""

from __future__ import annotations

from typing import ClassVar

from config.errors import BatcheryError, ConfigError

__all__ = [
    "BatcheryError",
    "ConfigError",
    "Conflict",
    "IdempotencyKeyReused",
    "InvalidRequest",
    "InvalidWebhookUrl",
    "LimitExceeded",
    "NotFound",
    "PayloadTooLarge",
    "PermissionDenied",
    "ServiceError",
    "TooManyRequests",
    "Unauthenticated",
    "Unavailable",
    "UnknownModel",
]


class ServiceError(BatcheryError):
    """The request could not be served."""

    status_code: ClassVar[int] = 400
    code: ClassVar[str] = "bad_request"

    def __init__(self, message: str | None = None, *, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.param = param
        if code is not None:
            self.code = code  # type: ignore[misc]

    @property
    def headers(self) -> dict[str, str]:
        """Extra response headers, such as Retry-After or WWW-Authenticate."""
        return {}


class InvalidRequest(ServiceError):
    """The request is invalid."""

    status_code = 422
    code = "invalid_request"


class UnknownModel(InvalidRequest):
    """No tier serves this model."""

    code = "unknown_model"


class IdempotencyKeyReused(InvalidRequest):
    """This Idempotency-Key was already used with a different request."""

    code = "idempotency_key_reused"


class NotFound(ServiceError):
    """No such object."""

    status_code = 404
    code = "not_found"


class Conflict(ServiceError):
    """The object's state does not allow this."""

    status_code = 409
    code = "conflict"


class PayloadTooLarge(ServiceError):
    """The request body is too large."""

    status_code = 413
    code = "payload_too_large"


class Unavailable(ServiceError):
    """A backing service is unavailable; try again shortly."""

    status_code = 503
    code = "service_unavailable"


class LimitExceeded(InvalidRequest):
    """An input is over a configured limit."""

    code = "limit_exceeded"


class Unauthenticated(ServiceError):
    """A valid API key is required: send `Authorization: Bearer <key>`."""

    status_code = 401
    code = "invalid_api_key"

    @property
    def headers(self) -> dict[str, str]:
        return {"www-authenticate": "Bearer"}


class PermissionDenied(ServiceError):
    """This API key does not have the scope this request needs."""

    status_code = 403
    code = "insufficient_scope"


class TooManyRequests(ServiceError):
    """Too many requests; try again later."""

    status_code = 429
    code = "too_many_requests"

    def __init__(
        self,
        message: str | None = None,
        *,
        retry_after: int = 1,
        param: str | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message, param=param, code=code)
        self.retry_after = retry_after

    @property
    def headers(self) -> dict[str, str]:
        return {"retry-after": str(self.retry_after)}


class InvalidWebhookUrl(InvalidRequest):
    """The webhook URL may not be called."""

    code = "invalid_webhook_url"
