"""A webhook receiver for tests: answers each path from a script and records every request.

In-process (``Receiver``, a thread) for integration tests, or as its own process for e2e::

    python -m tests.support.webhook_receiver --host 127.0.0.1 --port 9000 --script /flaky=500,500,200

A script is a list of answers per path, used in order; the last one repeats, and a path without a
script answers 200. An answer is a status code, optionally with ``:<seconds>`` to wait first, or
``r`` for a redirect (302 to ``/elsewhere``), ``ra<seconds>`` for 429 with Retry-After, or ``hold`` to
answer 200 only once ``POST /_release`` has been received (at most a minute later).
``GET /_received`` returns every request as JSON (path, headers, body); nothing else is served on GET.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: str


@dataclass
class Script:
    answers: dict[str, list[str]] = field(default_factory=dict)
    used: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    received: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    released: threading.Event = field(default_factory=threading.Event)

    def next_answer(self, path: str) -> str:
        with self.lock:
            answers = self.answers.get(path, ["200"])
            index = min(self.used[path], len(answers) - 1)
            self.used[path] += 1
            return answers[index]


def _handler(script: Script) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            if self.path != "/_received":
                self._answer(404, b"")
                return
            with script.lock:
                items = [item.__dict__ for item in script.received]
            self._answer(200, json.dumps(items).encode(), "application/json")

        def do_POST(self) -> None:
            length = int(self.headers.get("content-length", "0"))
            body = self.rfile.read(length).decode()
            if self.path == "/_release":
                script.released.set()
                self._answer(200, b"released")
                return
            with script.lock:
                script.received.append(
                    Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                )
            answer = script.next_answer(self.path)
            if answer == "r":
                self._answer(302, b"moved", headers={"location": "/elsewhere"})
            elif answer == "hold":
                script.released.wait(timeout=60)
                self._answer(200, b"held")
            elif answer.startswith("ra"):
                self._answer(429, b"slow down", headers={"retry-after": answer[2:]})
            else:
                status, _, wait = answer.partition(":")
                if wait:
                    time.sleep(float(wait))
                self._answer(int(status), b"x" * 3000 if status == "200" else b"receiver error")

        def _answer(
            self, status: int, body: bytes, ctype: str = "text/plain", headers: dict[str, str] | None = None
        ) -> None:
            try:
                self.send_response(status)
                self.send_header("content-type", ctype)
                self.send_header("content-length", str(len(body)))
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):
                pass

    return Handler


@contextmanager
def receiver(host: str = "127.0.0.1", port: int = 0, **answers: list[str]) -> Iterator[tuple[str, Script]]:
    """A running receiver thread; yields its base URL and script. ``answers`` maps path names (without
    the leading slash) to their answers."""
    script = Script(answers={f"/{name}": list(items) for name, items in answers.items()})
    server = ThreadingHTTPServer((host, port), _handler(script))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://{host}:{server.server_address[1]}", script
    finally:
        server.shutdown()
        server.server_close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--script", action="append", default=[], help="PATH=ANSWER,ANSWER,...")
    args = parser.parse_args()
    script = Script()
    for item in args.script:
        path, _, answers = item.partition("=")
        script.answers[path] = answers.split(",")
    server = ThreadingHTTPServer((args.host, args.port), _handler(script))
    server.daemon_threads = True
    server.serve_forever()


if __name__ == "__main__":
    main()
