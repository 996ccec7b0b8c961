"""docker-compose.yml as `docker-compose config` renders it, and its services run natively.

No Docker engine runs here, so a service's own ``command``, ``environment`` and ``healthcheck`` are run as
local processes: only host names are rewritten to loopback (with free ports), the volume mounts to their
host directories, and the test's Redis and PostgreSQL stand in for the images.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from testbed.processes import ROOT, base_env, free_port

COMPOSE_FILES = ("docker-compose.yml", "docker-compose.sim.yml")
# the port each service listens on in its container, as its command and health check name it
SERVICE_PORTS = {"api": 8000, "flower": 5555, "simulator": 8100}


def project(tmp: Path, *, copied_env: bool = True) -> Path:
    """A compose project directory as a deployment makes it: the compose files and ``cp .env.example
    .env`` (or, with ``copied_env=False``, a fresh clone that has not made its .env yet); the config
    directory is the repository's."""
    tmp.mkdir(parents=True, exist_ok=True)
    for name in COMPOSE_FILES:
        shutil.copy(ROOT / name, tmp / name)
    shutil.copy(ROOT / ".env.example", tmp / ".env.example")
    if copied_env:
        shutil.copy(ROOT / ".env.example", tmp / ".env")
    (tmp / "config").symlink_to(ROOT / "config")
    return tmp


def render(directory: Path, *args: str, env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """``docker-compose [args] config``, parsed; fails the test when compose refuses the file."""
    compose_env = {k: v for k, v in os.environ.items() if not k.startswith(("BATCHERY_", "OPENAI_"))}
    compose_env.update(env or {})
    result = subprocess.run(
        ["docker-compose", *args, "config"],
        cwd=directory,
        env=compose_env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return dict(yaml.safe_load(result.stdout))


@dataclass
class Native:
    """How the rendered stack maps onto this machine."""

    database_url: str
    redis_url: str
    tmp: Path
    ports: dict[str, int] = field(default_factory=lambda: {name: free_port() for name in SERVICE_PORTS})

    def text(self, value: str, mounts: Mapping[str, str]) -> str:
        """A command word, health check or variable of the file, made local."""
        value = value.replace("$$", "$")  # compose's escape, undone when it runs the command
        for service, port in SERVICE_PORTS.items():
            value = value.replace(f"{service}:{port}", f"127.0.0.1:{self.ports[service]}")
            value = re.sub(rf"(--port\s+|127\.0\.0\.1:){port}\b", rf"\g<1>{self.ports[service]}", value)
        value = value.replace("0.0.0.0", "127.0.0.1")
        value = value.replace("/tmp/", f"{self.tmp}/")
        for target, source in mounts.items():
            value = value.replace(target, source)
        return value

    def environment(self, service: Mapping[str, Any]) -> dict[str, str]:
        mounts = _mounts(service)
        env = base_env()
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
        for name, value in (service.get("environment") or {}).items():
            env[name] = self.text("" if value is None else str(value), mounts)
        env["DATABASE_URL"] = self.database_url  # the test's database and Redis stand in for the images
        env["REDIS_URL"] = self.redis_url
        return env

    def command(self, service: Mapping[str, Any]) -> list[str]:
        mounts = _mounts(service)
        words = [self.text(str(word), mounts) for word in service["command"]]
        by_port = {str(port): str(self.ports[name]) for name, port in SERVICE_PORTS.items()}
        return [
            by_port.get(word, word) if index and words[index - 1] == "--port" else word
            for index, word in enumerate(words)
        ]

    def healthcheck(self, service: Mapping[str, Any]) -> list[str]:
        test = [self.text(str(word), _mounts(service)) for word in service["healthcheck"]["test"]]
        if test[0] == "CMD-SHELL":
            return ["sh", "-c", " ".join(test[1:])]
        assert test[0] == "CMD", test
        return test[1:]


def _mounts(service: Mapping[str, Any]) -> dict[str, str]:
    mounts = {}
    for volume in service.get("volumes") or []:
        source, target, *_ = str(volume).split(":")
        mounts[target] = source
    return mounts
