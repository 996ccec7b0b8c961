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

import json
import uuid
from collections.abc import Iterator
from typing import Any

import hypothesis
import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, Phase
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import positive_data_acceptance

from api.main import create_app
from config.settings import load_settings
from tests.support.keys import bearer, create_key

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


# Generated hostile values for the classes the schema cannot express: nesting depth, NUL bytes, lone
# surrogates, non-finite numbers and integers past 64 bits, each as raw JSON text (Python's parser takes
# all of them), placed where a tenant can put them. Every one must get a 4xx naming its place, on SQLite
# and PostgreSQL alike, and leave nothing stored; in a bulk request it is refused on its own.

_POISON = st.one_of(
    st.sampled_from(["NaN", "Infinity", "-Infinity", "1e309", "-1e400", "123e4567"]),
    st.integers(min_value=2**63, max_value=2**90).map(str),
    st.integers(min_value=-(2**90), max_value=-(2**63) - 1).map(str),
    st.tuples(st.text(max_size=8), st.text(max_size=8)).map(lambda t: json.dumps(t[0] + "\x00" + t[1])),
    st.sampled_from(['"\\ud800"', '"x\\udfff"', '"\\udbff\\u0041"']),
    st.integers(min_value=65, max_value=400).map(lambda depth: "[" * depth + "0" + "]" * depth),
    st.integers(min_value=65, max_value=400).map(lambda depth: '{"a":' * depth + "0" + "}" * depth),
)
_PLACES = {  # where the value goes, and the param an error must name
    "pass-through field": "request.extra",
    "message content": "request.messages.0.content",
    "nested pass-through": "request.response_format.json_schema",
}


def _hostile_job(place: str, value: str) -> str:
    content, extra = '"hi"', ""
    if place == "pass-through field":
        extra = f', "extra": {value}'
    elif place == "message content":
        content = value
    else:
        extra = f', "response_format": {{"type": "json_schema", "json_schema": {value}}}'
    return (
        '{"kind": "chat", "request": {"model": "gpt-4o-mini", '
        f'"messages": [{{"role": "user", "content": {content}}}]{extra}}}}}'
    )


@pytest.fixture(params=["sqlite", "postgres"])
def hostile_client(request: pytest.FixtureRequest, redis_url: str) -> Iterator[TestClient]:
    url = str(request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "postgres_url"))
    settings = load_settings(database_url=url, redis_url=redis_url)
    key = create_key(url, f"hostile-fuzz-{uuid.uuid4().hex[:8]}")
    with TestClient(create_app(settings), headers=bearer(key)) as client:
        yield client


def _post(client: TestClient, path: str, text: str) -> Any:
    return client.post(path, content=text.encode("utf-8", "surrogatepass"), headers=_JSON)


_JSON = {"content-type": "application/json"}
_FUZZ = hypothesis.settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)


def test_generated_hostile_values_get_a_4xx_naming_their_place(hostile_client: TestClient) -> None:
    @_FUZZ
    @hypothesis.given(place=st.sampled_from(sorted(_PLACES)), value=_POISON)
    def fuzz(place: str, value: str) -> None:
        response = _post(hostile_client, "/v1/jobs", _hostile_job(place, value))
        assert response.status_code == 422, (place, value, response.text)
        error = response.json()["error"]
        assert error["code"] == "invalid_request" and error["param"].startswith(_PLACES[place]), error

    fuzz()
    assert hostile_client.get("/v1/jobs").json()["data"] == []  # nothing half stored


def test_generated_hostile_bulk_items_are_refused_on_their_own(hostile_client: TestClient) -> None:
    good = _hostile_job("pass-through field", "1")
    accepted: list[str] = []

    @_FUZZ
    @hypothesis.given(place=st.sampled_from(sorted(_PLACES)), value=_POISON)
    def fuzz(place: str, value: str) -> None:
        body = '{"jobs": [' + good + ", " + _hostile_job(place, value) + "]}"
        response = _post(hostile_client, "/v1/jobs/bulk", body)
        assert response.status_code == 202, (place, value, response.text)
        first, second = response.json()["data"]
        assert first["status"] == "queued" and second["status"] == "rejected", response.text
        assert second["error"]["param"].startswith(f"jobs.1.{_PLACES[place]}")
        accepted.append(first["id"])

    fuzz()
    stored = [job["id"] for job in hostile_client.get("/v1/jobs", params={"limit": 100}).json()["data"]]
    assert len(accepted) <= 100 and sorted(stored) == sorted(accepted)  # only the good items were stored


@pytest.mark.parametrize("priority", [2**31, 2**63, -(2**31) - 1])
def test_integers_past_a_stored_column_get_422(hostile_client: TestClient, priority: int) -> None:
    body = {"kind": "chat", "request": {"model": "gpt-4o-mini", "messages": []}, "priority": priority}
    body["request"]["messages"] = [{"role": "user", "content": "hi"}]
    response = hostile_client.post("/v1/jobs", json=body)
    assert response.status_code == 422 and response.json()["error"]["param"] == "priority"
