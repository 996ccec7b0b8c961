"""docker-compose.yml is valid (checked by Debian's docker-compose, which needs no engine), runs what
production needs, calls the real provider unless the simulator override is used, and stops with a clear
message when the provider has no key. The stack itself runs in tests/e2e/test_compose_smoke.py."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.support.compose import Native, project, render

pytestmark = pytest.mark.integration
SIM = ("-f", "docker-compose.yml", "-f", "docker-compose.sim.yml", "--profile", "sim")
LONG_RUNNING = {"redis", "postgres", "api", "dispatcher", "beat", "flower"} | {
    f"worker-{tier}" for tier in ("premium", "standard", "embeddings", "images")
}


def _services(directory: Path, *args: str, **env: str) -> dict[str, Any]:
    return dict(render(directory, *args, env=env)["services"])


def test_compose_file_is_valid_and_complete(tmp_path: Path) -> None:
    services = _services(project(tmp_path))
    assert LONG_RUNNING | {"migrate"} <= set(services)
    assert services["simulator"]["profiles"] == ["sim"]  # started only with the sim profile
    redis_command = " ".join(services["redis"]["command"])
    assert "--appendfsync everysec" in redis_command and "--maxmemory-policy noeviction" in redis_command
    for name in LONG_RUNNING:
        assert "healthcheck" in services[name], name
    assert json.dumps(services["api"]["environment"]).count("postgresql://") == 1
    # one dispatcher process fills the queues, so no worker spends its own CPU on dispatching
    assert services["dispatcher"]["command"] == ["batchery", "dispatcher"]
    workers = [name for name in services if name.startswith("worker-")]
    assert workers and all("--no-dispatch" in services[name]["command"] for name in workers)


def test_a_fresh_clone_without_a_dot_env_is_valid_too(tmp_path: Path) -> None:
    directory = project(tmp_path, copied_env=False)
    assert not (directory / ".env").exists()
    for args in ((), SIM):
        services = _services(directory, *args)
        assert services["api"]["environment"]["BATCHERY_ENVIRONMENT"] == "production"
    simulated = _services(directory, *SIM)
    assert "simulator" in simulated["api"]["environment"]["OPENAI_BASE_URL"]


def test_without_the_override_the_stack_calls_the_real_provider(tmp_path: Path) -> None:
    services = _services(project(tmp_path))
    for name, service in services.items():
        if service.get("image") == "batchery:latest":
            environment = service["environment"]
            assert environment["OPENAI_BASE_URL"] == "https://api.openai.com/v1", name
            assert environment["BATCHERY_ENVIRONMENT"] == "production", name
            assert "simulator" not in json.dumps(environment), name


def test_env_file_and_config_directory_reach_every_container(tmp_path: Path) -> None:
    directory = project(tmp_path)
    mine = tmp_path / "my-config"
    mine.mkdir()
    env_file = directory / ".env"
    env_file.write_text(
        env_file.read_text()
        + "\nOPENAI_API_KEY=sk-from-the-env-file\nAZURE_OPENAI_API_KEY=az-key\n"
        + 'BATCHERY_PROVIDERS={"azure": {"base_url": "https://a.example/openai/v1", "auth": "api-key",'
        + ' "api_key_env": "AZURE_OPENAI_API_KEY"}}\nBATCHERY_TIERS_FILE_NAME=my-tiers.toml\n'
    )
    services = _services(directory, BATCHERY_CONFIG_DIR=str(mine))
    for name in ("api", "worker-premium", "dispatcher", "migrate"):
        service = services[name]
        environment = service["environment"]
        assert environment["OPENAI_API_KEY"] == "sk-from-the-env-file"
        assert environment["AZURE_OPENAI_API_KEY"] == "az-key"  # a key api_key_env names
        assert json.loads(environment["BATCHERY_PROVIDERS"])["azure"]["auth"] == "api-key"
        assert environment["BATCHERY_TIERS_FILE"] == "/etc/batchery/my-tiers.toml"
        assert f"{mine}:/etc/batchery:ro" in service["volumes"]


def test_the_simulator_override_points_every_service_at_it(tmp_path: Path) -> None:
    services = _services(project(tmp_path), *SIM)
    assert "sim" in services["simulator"]["command"]
    for name, service in services.items():
        if service.get("image") == "batchery:latest" and name != "simulator":
            assert service["environment"]["OPENAI_BASE_URL"] == "http://simulator:8100/v1", name


def test_start_up_without_a_key_stops_with_a_message_naming_it(tmp_path: Path, redis_url: str) -> None:
    """The migrate service runs first and every other one waits for it: its refusal stops the stack
    before anything restarts in a loop."""
    services = _services(project(tmp_path))
    native = Native("postgresql://nobody@127.0.0.1:1/none", redis_url, tmp_path)
    migrate = services["migrate"]
    assert migrate["restart"] == "no"
    assert all(
        service["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
        for name, service in services.items()
        if service.get("image") == "batchery:latest" and name not in ("migrate", "simulator")
    )
    result = subprocess.run(
        native.command(migrate), env=native.environment(migrate), capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2, result.stderr
    assert "OPENAI_API_KEY" in result.stderr and "no API key" in result.stderr
