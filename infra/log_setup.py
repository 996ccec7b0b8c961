"""Logging for every batchery process (API, worker, beat, command line), with secrets redacted.

``install_log_redaction`` wraps the log record factory, so every record any library creates (uvicorn,
Celery, httpx, SQLAlchemy, ours) has its message, arguments, exception text, stack and string extras
redacted the moment it exists: before any handler, filter or formatter sees it, whichever handlers
are added later. ``RedactingFilter`` does the same for a handler configured by hand.
"""

from __future__ import annotations

import logging
import sys
import threading
from typing import Any

from config.errors import ConfigError
from config.settings import Settings, get_settings
from domain.redaction import redact, remember_secrets
from infra.log_format import STANDARD_ATTRIBUTES, make_formatter

_formatter = logging.Formatter()
_lock = threading.Lock()
_installed = False


def scrub(record: logging.LogRecord) -> logging.LogRecord:
    """Redact one record in place and return it."""
    try:
        message = record.getMessage()
    except (TypeError, ValueError):  # a bad format string: logging reports it itself
        return record
    record.msg = redact(message)
    record.args = None
    if record.exc_info and not record.exc_text:
        record.exc_text = redact(_formatter.formatException(record.exc_info))
    elif record.exc_text:
        record.exc_text = redact(record.exc_text)
    if record.stack_info:
        record.stack_info = redact(record.stack_info)
    for name, value in list(record.__dict__.items()):
        if name not in STANDARD_ATTRIBUTES and isinstance(value, str):
            setattr(record, name, redact(value))
    return record


class RedactingFilter(logging.Filter):
    """A handler filter that redacts secrets (for hand-made logging configurations)."""

    def filter(self, record: logging.LogRecord) -> bool:
        scrub(record)
        return True


def secrets_of(settings: Settings) -> list[str]:
    """Every secret value the settings hold."""
    values = [value for provider in settings.providers.values() for value in provider.secret_values()]
    values.append(settings.openai_api_key.get_secret_value())
    values.append(settings.flower_password.get_secret_value())
    values.extend(secret.get_secret_value() for secret in getattr(settings, "webhook_secrets", ()))
    return [value for value in values if value]


def install_log_redaction(settings: Settings | None = None) -> None:
    """Redact every log record this process creates from now on. Safe to call more than once."""
    global _installed
    if settings is not None:
        remember_secrets(secrets_of(settings))
    with _lock:
        if _installed:
            return
        previous = logging.getLogRecordFactory()

        def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
            return scrub(previous(*args, **kwargs))

        logging.setLogRecordFactory(factory)
        _installed = True


CHATTY_LOGGERS = ("httpx", "httpcore", "celery.beat", "celery.worker.strategy", "celery.app.trace")


def setup_process_logging(settings: Settings | None = None) -> None:
    """Redaction plus a root handler at the configured level (``BATCHERY_LOG_LEVEL``).

    Settings that do not load leave the level alone: the command reports the error itself."""
    if settings is None:
        try:
            settings = get_settings()
        except ConfigError:
            install_log_redaction(None)
            return
    install_log_redaction(settings)
    root = logging.getLogger()
    if not any(isinstance(handler, logging.StreamHandler) for handler in root.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(make_formatter(settings.log_format))
        root.addHandler(handler)
    root.setLevel(settings.log_level)
    if logging.getLevelName(settings.log_level) != logging.DEBUG:
        for name in CHATTY_LOGGERS:  # a line per HTTP request or per periodic task is noise, not news
            logging.getLogger(name).setLevel(logging.WARNING)
