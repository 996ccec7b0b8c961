"""How log lines look: text for people, or one JSON object per line for log pipelines.

``BATCHERY_LOG_FORMAT`` is ``text`` (default) or ``json``; ``BATCHERY_LOG_LEVEL`` sets the level.
Both formats carry a record's structured fields (``logger.info("...", extra={...})``): a job's line
has ``job_id``, ``tier``, ``model``, ``kind``, ``attempt``, ``latency_ms``, ``limiter_wait_ms`` and
``outcome``. JSON lines look like::

    {"ts": "2025-06-01T12:00:00.123Z", "level": "INFO", "logger": "batchery.jobs", "pid": 4242,
     "message": "job succeeded", "job_id": "job_01...", "tier": "standard", "model": "gpt-4o-mini",
     "kind": "chat", "attempt": 1, "latency_ms": 412, "limiter_wait_ms": 0, "outcome": "succeeded"}

Secrets are removed from every record before any formatter sees it (``infra.log_setup``), so the
formatters here print what they are given. ``make_formatter`` is used by the process set-up;
``uvicorn_log_config`` is the same set-up as a ``logging.config.dictConfig`` dictionary, which the
API's server applies in each of its processes.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any, Literal

LogFormat = Literal["text", "json"]

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
STANDARD_ATTRIBUTES = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName"}
"""The attributes every log record has; anything else on a record is a structured field."""
_HIDDEN = frozenset({"color_message"})
"""Extras some libraries add that only repeat the message."""


def extra_fields(record: logging.LogRecord) -> dict[str, Any]:
    """The structured fields a record carries beyond the standard ones."""
    return {
        name: value
        for name, value in record.__dict__.items()
        if name not in STANDARD_ATTRIBUTES and name not in _HIDDEN and not name.startswith("_")
    }


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC), level, logger, pid, message, the record's fields, and
    the exception text when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        moment = datetime.fromtimestamp(record.created, UTC)
        line: dict[str, Any] = {
            "ts": moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "pid": record.process,
            "message": record.getMessage(),
        }
        for name, value in extra_fields(record).items():
            line.setdefault(name, value)
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line["exception"] = record.exc_text
        if record.stack_info:
            line["stack"] = record.stack_info
        return json.dumps(line, default=str, ensure_ascii=False, separators=(",", ":"))


class TextFormatter(logging.Formatter):
    """``time LEVEL logger: message key=value ...``; fields that are not plain values are left out."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def formatMessage(self, record: logging.LogRecord) -> str:
        text = super().formatMessage(record)
        pairs = [
            f"{name}={value}"
            for name, value in extra_fields(record).items()
            if isinstance(value, str | int | float | bool)
        ]
        return f"{text} {' '.join(pairs)}" if pairs else text


def make_formatter(log_format: LogFormat | str) -> logging.Formatter:
    """The formatter for ``BATCHERY_LOG_FORMAT``."""
    return JsonFormatter() if log_format == "json" else TextFormatter()


def uvicorn_log_config(log_format: LogFormat | str, level: str) -> dict[str, Any]:
    """A dictConfig for the API server: one stderr handler on the root logger, and uvicorn's own
    loggers sending their lines to it, so that every line has the same format."""
    formatter = "infra.log_format.JsonFormatter" if log_format == "json" else "infra.log_format.TextFormatter"
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"batchery": {"()": formatter}},
        "handlers": {
            "batchery": {
                "class": "logging.StreamHandler",
                "formatter": "batchery",
                "stream": "ext://sys.stderr",
            }
        },
        "root": {"handlers": ["batchery"], "level": level},
        "loggers": {
            name: {"handlers": [], "propagate": True}
            for name in ("uvicorn", "uvicorn.error", "uvicorn.access")
        },
    }
