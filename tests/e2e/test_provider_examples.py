"""The README's provider examples, end to end: Azure OpenAI (v1 and deployment style), a vLLM server and
an OpenAI-compatible gateway behind a path prefix serving non-OpenAI models. Each provider is a path of
one simulator, which demands the key; the simulator records what reached it (path, query, which header
carried the key, the extra headers), and no job record shows a key or a secret header."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from testbed.processes import free_port
from tests.factories import chat_request
from tests.support.stack import Stack, running_stack
from tests.support.tiers_file import write_tiers

pytestmark = pytest.mark.e2e

KEY = "sk-test-provider-examples-key-271828"
GATEWAY_SECRET = "gw-tenant-secret-header-161803"
# model -> (tier, expected path, expected query, header carrying the key)
EXAMPLES = {
    "gpt-4o-mini": ("azure-v1", "/openai/v1/chat/completions", "", "api-key"),
    "gpt-4.1-mini": (
        "azure-deploy",
        "/openai/deployments/gpt-4.1-mini/chat/completions",
        "api-version=2024-10-21",
        "api-key",
    ),
    "Qwen/Qwen2.5-7B-Instruct": ("vllm", "/v1/chat/completions", "", "bearer"),
    "grok-4": ("gateway", "/v1/api/openai/chat/completions", "", "x-api-key"),
    "google/gemma-3-27b-it": ("gateway", "/v1/api/openai/chat/completions", "", "x-api-key"),
}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, postgres_url: str, redis_url: str) -> Iterator[Stack]:
    tmp: Path = tmp_path_factory.mktemp("providers")
    sim_port = free_port()
    sim = f"http://127.0.0.1:{sim_port}"
    providers = {
        "azure-v1": {
            "base_url": f"{sim}/openai/v1",
            "auth": "api-key",
            "api_key_env": "AZURE_OPENAI_API_KEY",
        },
        "azure-deploy": {
            "base_url": f"{sim}/openai/deployments/gpt-4.1-mini",
            "auth": "api-key",
            "api_key_env": "AZURE_OPENAI_API_KEY",
            "api_version": "2024-10-21",
        },
        "vllm": {"base_url": f"{sim}/v1", "api_key_env": "VLLM_API_KEY"},
        "gateway": {
            "base_url": f"{sim}/v1/api/openai",
            "auth": "x-api-key",
            "api_key_env": "GATEWAY_API_KEY",
            "headers": {"OpenAI-Organization": "org-examples", "X-Gateway-Tenant": GATEWAY_SECRET},
        },
    }
    tiers = {name: {"provider": name, "concurrency": 2, "max_attempts": 2} for name in providers}
    tiers_file = write_tiers(
        tmp / "tiers.toml", tiers, {model: tier for model, (tier, *_) in EXAMPLES.items()}
    )
    env = {
        "BATCHERY_TIERS_FILE": str(tiers_file),
        "BATCHERY_PROVIDERS": json.dumps(providers),
        "AZURE_OPENAI_API_KEY": KEY,
        "VLLM_API_KEY": KEY,
        "GATEWAY_API_KEY": KEY,
        "BATCHERY_LOG_LEVEL": "DEBUG",
    }
    sim_args = ("--no-limits", "--require-key", KEY, "--tiers", str(tiers_file))
    with running_stack(
        tmp, postgres_url, redis_url, sim_args=sim_args, extra_env=env, sim_port=sim_port
    ) as s:
        yield s


def _calls(stack: Stack) -> list[dict[str, Any]]:
    with stack.sim() as sim:
        return list(sim.get("/_requests", params={"limit": 1000}).json()["data"])


def test_each_example_reaches_its_provider_with_its_auth_style(stack: Stack) -> None:
    with stack.api() as api:
        ids = []
        for model in EXAMPLES:
            response = api.post("/v1/jobs", json={"kind": "chat", "request": chat_request(model)})
            assert response.status_code == 202, response.text
            ids.append(response.json()["id"])
        jobs = stack.wait_jobs(api, ids)
    assert [job["status"] for job in jobs] == ["succeeded"] * len(EXAMPLES), [job["error"] for job in jobs]
    calls = {call["model"]: call for call in _calls(stack) if call["status"] == 200}
    for model, (_, path, query, auth) in EXAMPLES.items():
        call = calls[model]
        assert (call["path"], call["query"], call["auth"]) == (path, query, auth), call
    gateway = calls["grok-4"]["headers"]
    assert gateway["openai-organization"] == "org-examples"
    assert gateway["x-gateway-tenant"] == GATEWAY_SECRET
    assert "authorization" not in calls["grok-4"]["headers"]
    assert "x-gateway-tenant" not in calls["gpt-4o-mini"]["headers"]


def test_no_job_record_or_log_shows_a_key_or_a_secret_header(stack: Stack) -> None:
    with stack.api() as api:
        for model in EXAMPLES:
            job = api.post("/v1/jobs", json={"kind": "chat", "request": chat_request(model)}).json()
            text = json.dumps(stack.wait_jobs(api, [job["id"]])[0])
            assert KEY not in text and GATEWAY_SECRET not in text
    logs = "".join(path.read_text(errors="replace") for path in stack.log_dir.glob("*.log"))
    assert KEY not in logs and GATEWAY_SECRET not in logs
    assert "grok-4" in logs  # the logs were written (DEBUG) and searched


def test_the_simulator_refuses_a_call_without_the_key(stack: Stack) -> None:
    response = httpx.post(
        f"{stack.sim_url}/v1/api/openai/chat/completions", json=chat_request("grok-4"), timeout=10
    )
    assert response.status_code == 401
