"""Run the simulator as a child process, for integration and end-to-end tests and benchmarks.

    with running_simulator(["--no-limits"]) as base_url:   # e.g. "http://127.0.0.1:40123"
        ...                                                # OpenAI base URL: base_url + "/v1"

The child listens on a free port of 127.0.0.1 and is stopped (terminated, then killed) on exit.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

_ROOT = Path(__file__).resolve().parent.parent


class SimulatorStartError(RuntimeError):
    """The simulator process did not become ready."""


def free_port() -> int:
    """A TCP port of 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until_ready(base_url: str, process: subprocess.Popen[bytes], timeout: float) -> None:
    """Poll ``/_health`` until it answers; SimulatorStartError if the process exits or time runs out."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SimulatorStartError(f"the simulator exited with status {process.returncode}")
        try:
            with opener.open(base_url + "/_health", timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise SimulatorStartError(f"the simulator did not answer within {timeout} s")


@contextmanager
def running_simulator(
    args: Sequence[str] = (), timeout: float = 20.0, prefix: Sequence[str] = ()
) -> Iterator[str]:
    """Start ``[PREFIX...] python -m simulator ARGS`` on a free port; yields its base URL (without ``/v1``).

    ``prefix`` wraps the command, e.g. ``["taskset", "-c", "0"]`` to pin it to one core.
    """
    port = free_port()
    command = [*prefix, sys.executable, "-m", "simulator", "--host", "127.0.0.1", "--port", str(port), *args]
    path = os.environ.get("PYTHONPATH")
    env = {**os.environ, "PYTHONPATH": str(_ROOT) + (os.pathsep + path if path else "")}
    process = subprocess.Popen(command, cwd=_ROOT, env=env)
    base_url = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(base_url, process, timeout)
        yield base_url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
