"""docker-compose.yml is valid (checked by Debian's docker-compose, which needs no engine) and runs
what production needs."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def _config(*args: str) -> str:
    result = subprocess.run(
        ["docker-compose", "-f", str(ROOT / "docker-compose.yml"), *args, "config"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def _services(text: str) -> dict[str, Any]:
    import yaml

    return dict(yaml.safe_load(text)["services"])


def test_compose_file_is_valid_and_complete() -> None:
    services = _services(_config())
    expected = {"redis", "postgres", "migrate", "api", "beat", "flower"}
    expected |= {f"worker-{tier}" for tier in ("premium", "standard", "embeddings", "images")}
    assert expected <= set(services)
    assert services["simulator"]["profiles"] == ["sim"]  # started only with --profile sim
    redis_command = " ".join(services["redis"]["command"])
    assert "--appendfsync everysec" in redis_command and "--maxmemory-policy noeviction" in redis_command
    for name in expected - {"migrate"}:
        assert "healthcheck" in services[name], name
    assert json.dumps(services["api"]["environment"]).count("postgresql://") == 1
    # one dispatcher process fills the queues, so no worker spends its own CPU on dispatching
    assert services["dispatcher"]["command"] == ["batchery", "dispatcher"]
    workers = [name for name in services if name.startswith("worker-")]
    assert workers and all("--no-dispatch" in services[name]["command"] for name in workers)


def test_simulator_runs_under_its_profile() -> None:
    simulator = _services(_config("--profile", "sim"))["simulator"]
    assert "sim" in simulator["command"]
