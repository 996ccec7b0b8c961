"""schemathesis fuzzes every operation of the served OpenAPI schema, with a valid key, against the real
application on PostgreSQL and Redis: no answer may be a server error, and every answer must match the
schema (status, content type, headers, body), whatever the input; invalid input must be refused.
Auth is probed too: a declared bearer scheme must really refuse missing and invalid keys.

One check is left out: ``positive_data_acceptance`` (a schema-valid request must not get 4xx). A
schema cannot say which models the tiers serve or what each job kind needs inside ``request``, so a
well-formed request for an unknown model rightly answers 422 ``unknown_model``.

The examples per operation and mode (valid and invalid input) are bounded (``MAX_EXAMPLES``) so that
the whole run stays short. Operations are walked with schemathesis' Python API inside one test, so each
failing operation is reported with its minimal example."""

from __future__ import annotations

import uuid
from typing import Any

import hypothesis
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import positive_data_acceptance

from api.main import create_app
from config.settings import load_settings
from tests.support.keys import create_key

pytestmark = pytest.mark.integration

MAX_EXAMPLES = 12


@pytest.fixture(scope="module")
def fuzz_key(postgres_url: str) -> str:
    return create_key(postgres_url, f"fuzz-{uuid.uuid4().hex[:8]}")


@pytest.fixture(scope="module")
def api_schema(postgres_url: str, redis_url: str, fuzz_key: str) -> Any:
    settings = load_settings(
        database_url=postgres_url, redis_url=redis_url, webhook_allowed_networks="127.0.0.1/32"
    )
    schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(settings))
    # 413 and 414 are the right refusals of an oversized body or URL, which invalid input can be
    schema.config.checks.negative_data_rejection.expected_statuses += ["413", "414"]
    # like most HTTP APIs (OpenAI's included) batchery ignores query parameters it does not know
    schema.config.generation.allow_extra_parameters = False
    return schema


def test_api_answers_every_input_within_its_schema(api_schema: Any, fuzz_key: str) -> None:
    auth = {"Authorization": f"Bearer {fuzz_key}"}
    failures: list[str] = []
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert any(operation.path == "/v1/jobs" for operation in operations)
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @hypothesis.given(case=operation.as_strategy(mode))
            @hypothesis.settings(
                max_examples=MAX_EXAMPLES,
                deadline=None,
                derandomize=True,
                database=None,
                phases=[Phase.explicit, Phase.generate, Phase.shrink],
                suppress_health_check=list(HealthCheck),
            )
            def fuzz(case: schemathesis.Case) -> None:
                case.call_and_validate(headers=auth, excluded_checks=[positive_data_acceptance])

            try:
                fuzz()
            except Unsatisfiable:  # nothing about this operation can be made invalid (no parameters)
                assert mode is GenerationMode.NEGATIVE, f"no valid input for {operation.label}"
            except (Exception, BaseExceptionGroup) as exc:  # report every operation, not the first
                failures.append(f"{mode.value} {operation.label}:\n{exc}")
    assert not failures, "\n\n".join(failures)
