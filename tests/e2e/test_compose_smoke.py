"""The compose stack, run natively: every service of docker-compose.yml (with the simulator override, as
the offline try-out runs it, with no variable set) starts from its own ``command`` and ``environment``;
migrate runs first; every health check passes; one job of each kind goes through; ``/readyz`` answers;
Flower's API, with the login it printed, lists a worker per tier."""

from __future__ import annotations

import base64
import re
import subprocess
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from testbed.processes import Process, wait_for, wait_http
from testbed.services import fresh_postgres_database
from tests.factories import REQUESTS
from tests.support.compose import Native, project, render
from tests.support.keys import create_key

pytestmark = pytest.mark.e2e
SIM = ("-f", "docker-compose.yml", "-f", "docker-compose.sim.yml", "--profile", "sim")
KINDS = ("chat", "vision", "embedding", "image", "response")


@dataclass
class Compose:
    services: dict[str, Any]
    native: Native
    processes: dict[str, Process]


@pytest.fixture(scope="module")
def compose(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[Compose]:
    tmp: Path = tmp_path_factory.mktemp("compose")
    services = dict(render(project(tmp / "project"), *SIM)["services"])
    with fresh_postgres_database() as database_url, ExitStack() as stop:
        native = Native(database_url, redis_url, tmp)
        migrate = services["migrate"]
        done = subprocess.run(
            native.command(migrate),
            env=native.environment(migrate),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        processes: dict[str, Process] = {}
        for name, service in services.items():
            if service.get("image") != "batchery:latest" or name == "migrate":
                continue
            process = Process(name, native.command(service), native.environment(service), tmp)
            stop.callback(process.stop)
            processes[name] = process
        yield Compose(services, native, processes)


def _api(compose: Compose) -> httpx.Client:
    key = create_key(compose.native.database_url)
    return httpx.Client(
        base_url=f"http://127.0.0.1:{compose.native.ports['api']}",
        headers={"authorization": f"Bearer {key}"},
        timeout=30,
    )


def test_every_long_running_service_passes_its_own_health_check(compose: Compose) -> None:
    api_url = f"http://127.0.0.1:{compose.native.ports['api']}"
    wait_http(f"{api_url}/healthz", compose.processes["api"], timeout=60)
    for name, process in compose.processes.items():
        service = compose.services[name]
        check = compose.native.healthcheck(service)
        env = compose.native.environment(service)

        def healthy(check: list[str] = check, env: dict[str, str] = env, process: Process = process) -> bool:
            assert process.alive(), f"{process.name} exited:\n{process.log_tail()}"
            return subprocess.run(check, env=env, capture_output=True, timeout=30).returncode == 0

        wait_for(healthy, timeout=90, interval=1.0, what=f"{name}'s health check")


def test_one_job_of_each_kind_goes_through(compose: Compose) -> None:
    with _api(compose) as api:
        wait_http(
            f"http://127.0.0.1:{compose.native.ports['api']}/readyz", compose.processes["api"], timeout=60
        )
        assert api.get("/readyz").status_code == 200
        ids = []
        for kind in KINDS:
            response = api.post("/v1/jobs", json={"kind": kind, "request": REQUESTS[kind]()})
            assert response.status_code == 202, response.text
            ids.append(response.json()["id"])

        def finished() -> bool:
            return all(api.get(f"/v1/jobs/{i}").json()["status"] in ("succeeded", "failed") for i in ids)

        wait_for(finished, timeout=120, interval=0.5, what="the jobs")
        jobs = [api.get(f"/v1/jobs/{job_id}").json() for job_id in ids]
    assert [job["status"] for job in jobs] == ["succeeded"] * len(KINDS), [job["error"] for job in jobs]
    with httpx.Client(base_url=f"http://127.0.0.1:{compose.native.ports['simulator']}") as sim:
        served = sim.get("/_stats").json()["requests_total"]
    assert served >= len(KINDS)  # the jobs reached the simulator the override names


def test_flower_prints_its_login_and_lists_a_worker_per_tier(compose: Compose) -> None:
    flower = compose.processes["flower"]
    wait_for(lambda: "Flower login:" in flower.log_path.read_text(), timeout=60, what="Flower's login")
    match = re.search(r"Flower login: (\S+) / (\S+)", flower.log_path.read_text())
    assert match is not None
    token = base64.b64encode(f"{match[1]}:{match[2]}".encode()).decode()
    url = f"http://127.0.0.1:{compose.native.ports['flower']}"
    wait_http(f"{url}/healthcheck", flower, timeout=60)
    assert httpx.get(f"{url}/api/workers", timeout=10).status_code == 401

    def workers() -> set[str]:
        response = httpx.get(
            f"{url}/api/workers",
            params={"refresh": "1"},
            headers={"authorization": f"Basic {token}"},
            timeout=30,
        )
        assert response.status_code == 200, response.text
        return {name.split("@")[0] for name in response.json()}

    wait_for(lambda: {"premium", "standard", "embeddings", "images"} <= workers(), timeout=90, what="workers")
