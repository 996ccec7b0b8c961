"""Log lines as JSON objects or as text, each with the record's structured fields."""

from __future__ import annotations

import json
import logging
import sys

import pytest

from infra.log_format import JsonFormatter, TextFormatter, make_formatter, uvicorn_log_config

pytestmark = pytest.mark.unit

JOB = {"job_id": "job_01abc", "tier": "standard", "model": "gpt-4o-mini", "attempt": 2, "latency_ms": 412}


def _record(message: str = "job %s", *args: object, **extra: object) -> logging.LogRecord:
    record = logging.LogRecord(
        "batchery.jobs", logging.INFO, __file__, 1, message, args or ("succeeded",), None
    )
    record.__dict__.update(extra)
    return record


def test_a_json_line_is_one_object_with_the_jobs_fields() -> None:
    line = JsonFormatter().format(_record(**JOB))

    assert "\n" not in line
    body = json.loads(line)
    assert (
        body["message"] == "job succeeded" and body["level"] == "INFO" and body["logger"] == "batchery.jobs"
    )
    assert body["ts"].endswith("Z") and isinstance(body["pid"], int)
    assert {name: body[name] for name in JOB} == JOB


def test_a_json_line_carries_the_exception_and_survives_odd_values() -> None:
    record = _record("job %s", "failed", data={"when": object()})
    try:
        raise ValueError("bad thing")
    except ValueError:
        record.exc_info = sys.exc_info()

    body = json.loads(JsonFormatter().format(record))

    assert "ValueError: bad thing" in body["exception"]
    assert body["data"]["when"].startswith("<object")


def test_a_text_line_appends_plain_fields_as_key_value_pairs() -> None:
    line = TextFormatter().format(_record(**JOB, color_message="ignored", data={"nested": 1}))

    assert "INFO batchery.jobs: job succeeded" in line
    assert line.endswith("job_id=job_01abc tier=standard model=gpt-4o-mini attempt=2 latency_ms=412")
    assert "color_message" not in line and "nested" not in line


def test_the_format_setting_picks_the_formatter_and_the_server_config_uses_it() -> None:
    assert json.loads(make_formatter("json").format(_record(**JOB)))["job_id"] == "job_01abc"
    text = make_formatter("text").format(_record(**JOB))
    assert "INFO batchery.jobs: job succeeded job_id=job_01abc" in text
    config = uvicorn_log_config("json", "WARNING")
    assert config["formatters"]["batchery"]["()"] == "infra.log_format.JsonFormatter"
    assert config["root"] == {"handlers": ["batchery"], "level": "WARNING"}
    assert config["loggers"]["uvicorn.error"] == {"handlers": [], "propagate": True}
