"""``batchery api``: one uvicorn process, or N of them each with its own socket on the shared port.

With ``--workers N`` every process binds the port with ``SO_REUSEPORT``, so the kernel hashes each new
connection to one of the N listening sockets and the processes share the load. uvicorn's own
supervisor hands one listening socket to every process instead: the process whose event loop wakes
first accepts every pending connection, and with a fleet of keep-alive callers one process often
ends up with all of them while the other idles (measured in ``bench/README.md``).

The supervisor restarts a process that dies, stops everything if a process cannot start (a bad
setting or a port held by another program would fail the same way again), and on SIGTERM or SIGINT
passes the signal on and waits for the processes' graceful shutdown. ``SO_REUSEPORT`` would also let a
second supervisor started on the same port join the first: each supervisor holds an abstract Unix
socket named after its address for its lifetime, and a second one finds the name taken and stops.
"""

from __future__ import annotations

import ctypes
import logging
import multiprocessing
import os
import signal
import socket
import sys
import threading
from dataclasses import dataclass
from multiprocessing.process import BaseProcess
from typing import Any

APP = "api.main:create_app"
STARTUP_FAILURE = 3
"""Exit code of a process that could not start serving (uvicorn's own code for it)."""
_PR_SET_PDEATHSIG = 1

log = logging.getLogger("batchery.api")


@dataclass(frozen=True)
class ServeOptions:
    host: str
    port: int
    log_level: str
    log_config: dict[str, Any]
    graceful_shutdown_seconds: int

    def uvicorn_config(self) -> Any:
        import uvicorn

        return uvicorn.Config(
            APP,
            factory=True,
            host=self.host,
            port=self.port,
            log_level=self.log_level,
            log_config=self.log_config,
            access_log=False,
            timeout_graceful_shutdown=self.graceful_shutdown_seconds,
        )


def serve_one(options: ServeOptions) -> int:
    import uvicorn

    server = uvicorn.Server(options.uvicorn_config())
    server.run()
    return 0 if server.started else STARTUP_FAILURE


def reuse_port_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on (host, port) that other processes of this user may bind as well."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
        sock.listen(2048)
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def address_guard(host: str, port: int) -> socket.socket:
    """Hold the name ``batchery-api:<host>:<port>`` in the abstract Unix socket namespace (released by
    the kernel when the process ends, however it ends); OSError when another supervisor holds it."""
    guard = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        guard.bind(f"\0batchery-api:{host}:{port}")
    except OSError:
        guard.close()
        raise
    return guard


def _die_with_parent() -> None:
    """Ask Linux to send this process SIGTERM when the supervisor dies, so no process is orphaned."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def _serve_child(options: ServeOptions) -> None:
    import uvicorn

    _die_with_parent()
    try:
        sock = reuse_port_socket(options.host, options.port)
    except OSError as exc:
        print(f"batchery api: cannot listen on {options.host}:{options.port}: {exc}", file=sys.stderr)
        sys.exit(STARTUP_FAILURE)
    server = uvicorn.Server(options.uvicorn_config())
    server.run(sockets=[sock])
    if not server.started:
        sys.exit(STARTUP_FAILURE)


class Supervisor:
    """Keeps ``count`` serving processes running until told to stop."""

    def __init__(self, options: ServeOptions, count: int) -> None:
        self.options = options
        self.count = count
        self.stopping = threading.Event()
        self._context = multiprocessing.get_context("spawn")
        self.processes: list[BaseProcess] = []

    def _start_one(self) -> BaseProcess:
        process = self._context.Process(target=_serve_child, args=(self.options,), name="batchery-api")
        process.start()
        log.info("started API process %s", process.pid)
        return process

    def _on_signal(self, signum: int, _frame: object) -> None:
        self.stopping.set()

    def run(self) -> int:
        address = f"{self.options.host}:{self.options.port}"
        try:
            guard = address_guard(self.options.host, self.options.port)
        except OSError:
            log.error("another batchery api already serves %s; stopping", address)
            return STARTUP_FAILURE
        with guard:
            return self._supervise()

    def _supervise(self) -> int:
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._on_signal)
        self.processes = [self._start_one() for _ in range(self.count)]
        failed = False
        while not self.stopping.wait(0.5):
            for index, process in enumerate(self.processes):
                if process.is_alive() or self.stopping.is_set():
                    continue
                if process.exitcode == STARTUP_FAILURE:
                    log.error("API process %s could not start; stopping", process.pid)
                    failed = True
                    self.stopping.set()
                    break
                log.warning("API process %s exited with %s; starting another", process.pid, process.exitcode)
                self.processes[index] = self._start_one()
        self._stop_all()
        return STARTUP_FAILURE if failed else 0

    def _stop_all(self) -> None:
        for process in self.processes:
            if process.is_alive() and process.pid is not None:
                os.kill(process.pid, signal.SIGTERM)
        for process in self.processes:
            process.join(self.options.graceful_shutdown_seconds + 5)
            if process.is_alive():
                log.warning("API process %s did not stop in time; killing it", process.pid)
                process.kill()
                process.join()


def serve(options: ServeOptions, processes: int) -> int:
    if processes == 1:
        return serve_one(options)
    return Supervisor(options, processes).run()
