"""``batchery api --workers N``: N real uvicorn processes, each with its own socket on the port.

The kernel spreads a fleet of keep-alive connections over the processes; a process that dies is
replaced; a SIGTERM to the supervisor alone (as a container runtime sends it) stops every process;
a port held by another program stops the command at once with an error instead of a restart loop;
and a supervisor killed outright leaves no serving process behind."""

from __future__ import annotations

import os
import signal
import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from testbed.processes import Process, base_env, batchery, free_port, spawned_children, wait_for, wait_http

pytestmark = pytest.mark.e2e


def _exists(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


def _socket_inodes(pid: int) -> set[str]:
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    return inodes


def _accepted_connections(port: int) -> dict[str, int]:
    """Socket inode of each established TCP connection whose local port is ``port``."""
    found: dict[str, int] = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local_port = int(fields[1].rsplit(":", 1)[1], 16)
            if local_port == port and fields[3] == "01":
                found[fields[9]] = local_port
    return found


def serving(process: Process, port: int) -> list[int]:
    """Once both serving processes run and the port answers: their pids."""
    wait_for(lambda: len(spawned_children(process.popen.pid)) == 2, 30, what="two API processes")
    wait_http(f"http://127.0.0.1:{port}/healthz", process)
    return spawned_children(process.popen.pid)


@contextmanager
def api(tmp_path: Path, postgres_url: str, redis_url: str, port: int, workers: int = 2) -> Iterator[Process]:
    env = base_env(
        DATABASE_URL=postgres_url,
        REDIS_URL=redis_url,
        OPENAI_BASE_URL="http://127.0.0.1:9/v1",
        BATCHERY_REDIS_PREFIX=f"processes-{uuid.uuid4().hex[:8]}",
    )
    argv = batchery("api", "--port", str(port), "--workers", str(workers))
    process = Process(f"api-{uuid.uuid4().hex[:6]}", argv, env, tmp_path)
    try:
        yield process
    finally:
        process.stop(timeout=40)


def test_connections_spread_over_the_processes(postgres_url: str, redis_url: str, tmp_path: Path) -> None:
    port = free_port()
    with api(tmp_path, postgres_url, redis_url, port) as process:
        children = serving(process, port)
        wait_for(lambda: not _accepted_connections(port), 10, what="the probes' connections closed")
        # 32 keep-alive callers connecting at once, as a fleet of services does
        callers = [socket.create_connection(("127.0.0.1", port)) for _ in range(32)]
        try:
            for caller in callers:
                caller.sendall(b"GET /healthz HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n")
            for caller in callers:
                assert caller.recv(4096).startswith(b"HTTP/1.1 200")
            accepted = _accepted_connections(port)
            held = {pid: len(_socket_inodes(pid) & accepted.keys()) for pid in children}
        finally:
            for caller in callers:
                caller.close()
    assert sum(held.values()) == 32, held
    # each connection is hashed to one of the two sockets: below 4 of 32 has odds under 1 in 100,000
    assert min(held.values()) >= 4, held


def test_a_dead_process_is_replaced_and_sigterm_stops_them_all(
    postgres_url: str, redis_url: str, tmp_path: Path
) -> None:
    port = free_port()
    with api(tmp_path, postgres_url, redis_url, port) as process:
        first, second = serving(process, port)
        os.kill(first, signal.SIGKILL)

        def replaced() -> bool:
            now = spawned_children(process.popen.pid)
            return len(now) == 2 and first not in now

        wait_for(replaced, 30, what="a replacement process")
        replacement = next(pid for pid in spawned_children(process.popen.pid) if pid != second)
        wait_http(f"http://127.0.0.1:{port}/healthz", process)
        os.kill(process.popen.pid, signal.SIGTERM)  # the supervisor alone, as a container runtime does
        assert process.popen.wait(timeout=40) == 0
        assert not _exists(second) and not _exists(replacement)


def test_a_port_held_by_another_program_stops_the_command(
    postgres_url: str, redis_url: str, tmp_path: Path
) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        with api(tmp_path, postgres_url, redis_url, port) as process:
            assert process.popen.wait(timeout=60) == 3
            assert f"cannot listen on 127.0.0.1:{port}" in process.log_tail()
            assert not spawned_children(process.popen.pid)


def test_a_killed_supervisor_leaves_no_process(postgres_url: str, redis_url: str, tmp_path: Path) -> None:
    port = free_port()
    with api(tmp_path, postgres_url, redis_url, port) as process:
        children = serving(process, port)
        os.kill(process.popen.pid, signal.SIGKILL)
        process.popen.wait(timeout=10)
        wait_for(lambda: not any(_exists(pid) for pid in children), 40, what="the API processes gone")


def test_a_second_supervisor_on_the_same_port_stops_instead_of_joining(
    postgres_url: str, redis_url: str, tmp_path: Path
) -> None:
    port = free_port()
    with api(tmp_path, postgres_url, redis_url, port) as first:
        serving(first, port)
        with api(tmp_path, postgres_url, redis_url, port) as second:
            assert second.popen.wait(timeout=60) == 3
            assert f"another batchery api already serves 127.0.0.1:{port}" in second.log_tail()
        wait_http(f"http://127.0.0.1:{port}/healthz", first)
        assert first.alive() and len(spawned_children(first.popen.pid)) == 2
