"""Configuration errors.

``ConfigError`` is defined here, at the bottom layer, so that settings and tiers can raise it without
importing the domain. ``domain.errors.BatcheryError`` re-exports it as part of the one exception tree.
"""


class BatcheryError(Exception):
    """Something went wrong in batchery."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (self.__doc__ or "").strip().splitlines()[0])

    @property
    def message(self) -> str:
        return str(self.args[0])


class ConfigError(BatcheryError):
    """The configuration is invalid."""
