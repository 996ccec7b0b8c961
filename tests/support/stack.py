"""A whole batchery stack of real processes: the simulator, the API (uvicorn) and Celery workers,
on free ports, against a real PostgreSQL database and a private Redis database.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from testbed.processes import Process, base_env, batchery, free_port, wait_http
from tests.support.keys import create_key


@dataclass
class Stack:
    api_url: str
    sim_url: str
    env: dict[str, str]
    log_dir: Path
    processes: dict[str, Process] = field(default_factory=dict)
    api_key: str = ""
    """A key of tenant ``default`` with every scope; ``api()`` sends it."""

    def api(self, key: str | None = None) -> httpx.Client:
        """A client of the API that authenticates with ``key`` (default: the stack's own key)."""
        token = self.api_key if key is None else key
        headers = {"authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.api_url, timeout=30.0, headers=headers)

    def sim(self) -> httpx.Client:
        return httpx.Client(base_url=self.sim_url, timeout=30.0)

    def start_worker(self, name: str, *args: str) -> Process:
        process = Process(name, batchery("worker", "--name", f"{name}@%h", *args), self.env, self.log_dir)
        self.processes[name] = process
        return process

    def start_dispatcher(self, name: str = "dispatcher") -> Process:
        process = Process(name, batchery("dispatcher"), self.env, self.log_dir)
        self.processes[name] = process
        return process

    def wait_jobs(
        self, client: httpx.Client, ids: Sequence[str], timeout: float = 60.0
    ) -> list[dict[str, Any]]:
        """Poll until every job is terminal; returns them in the order given."""
        deadline = time.monotonic() + timeout
        pending = list(ids)
        done: dict[str, dict[str, Any]] = {}
        while pending:
            if time.monotonic() > deadline:
                logs = "\n".join(f"--- {n}\n{p.log_tail(15)}" for n, p in self.processes.items())
                raise TimeoutError(f"{len(pending)} jobs not finished, e.g. {pending[:3]}\n{logs}")
            for job_id in list(pending):
                job = client.get(f"/v1/jobs/{job_id}").json()
                if job["status"] in ("succeeded", "failed", "cancelled"):
                    done[job_id] = job
                    pending.remove(job_id)
            if pending:
                time.sleep(0.2)
        return [done[job_id] for job_id in ids]


@contextmanager
def running_stack(
    tmp_path: Path,
    database_url: str,
    redis_url: str,
    *,
    sim_args: Sequence[str] = ("--no-limits",),
    workers: int = 1,
    worker_args: Sequence[str] = ("--concurrency", "8"),
    extra_env: dict[str, str] | None = None,
    dispatcher: bool = False,
    sim_port: int | None = None,
) -> Iterator[Stack]:
    """The stack; ``dispatcher`` adds a ``batchery dispatcher`` process (workers dispatch by themselves).
    ``sim_port`` fixes the simulator's port, for providers configured before the stack starts."""
    sim_port, api_port = sim_port or free_port(), free_port()
    env = base_env(
        DATABASE_URL=database_url,
        REDIS_URL=redis_url,
        OPENAI_BASE_URL=f"http://127.0.0.1:{sim_port}/v1",
        OPENAI_API_KEY="sk-test-e2e-provider-key",
        **(extra_env or {}),
    )
    stack = Stack(f"http://127.0.0.1:{api_port}", f"http://127.0.0.1:{sim_port}", env, tmp_path)
    stack.api_key = create_key(database_url)
    with ExitStack() as stop:
        sim = Process("simulator", batchery("sim", "--port", str(sim_port), *sim_args), env, tmp_path)
        stop.callback(sim.stop)
        stack.processes["simulator"] = sim
        api = Process("api", batchery("api", "--port", str(api_port)), env, tmp_path)
        stop.callback(api.stop)
        stack.processes["api"] = api
        for index in range(workers):
            worker = stack.start_worker(f"worker{index}", *worker_args)
            stop.callback(worker.stop)
        if dispatcher:
            stack.start_dispatcher()
        wait_http(f"{stack.sim_url}/_stats", sim)
        wait_http(f"{stack.api_url}/healthz", api)
        try:
            yield stack
        finally:
            for name, process in stack.processes.items():
                if name.startswith(("worker", "dispatcher")) and process.alive():
                    process.stop()
