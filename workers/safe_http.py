"""Sending to a user-supplied URL over exactly the address the guard checked.

``domain.webhooks.url_safety.check_url`` resolves the name once and checks every address. The request built
here goes to that address (the URL's host is replaced by the IP), while the ``Host`` header and the
TLS server name (SNI, also used to verify the certificate) keep the original name. The HTTP client
never resolves the name itself, so a DNS answer that changes after the check goes nowhere.

The client never follows redirects, ignores proxy and certificate environment variables
(``trust_env=False``), keeps no idle connection (a pooled connection opened for one name must never
carry a request for another), asks for an uncompressed answer and reads at most a few bytes of it.
Given a ``deadline``, the whole exchange (connect, send, headers, body) ends by then, however slowly
the receiver trickles its answer: the client's own timeouts bound each read, not their sum.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from config.errors import BatcheryError
from domain.webhooks.url_safety import CheckedUrl

USER_AGENT = "batchery-webhooks/0.1"


class OutboundError(BatcheryError):
    """The request could not be completed (no answer)."""


@dataclass(frozen=True, slots=True)
class OutboundResponse:
    """What came back: status, headers and the first bytes of the body."""

    status_code: int
    headers: Mapping[str, str]
    excerpt: bytes


def make_webhook_client(timeout: float, transport: httpx.BaseTransport | None = None) -> httpx.Client:
    """A client for user-supplied URLs: no redirects, no environment, no keep-alive."""
    if transport is None:
        transport = httpx.HTTPTransport(
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=0),
            trust_env=False,
            retries=0,
        )
    return httpx.Client(
        timeout=httpx.Timeout(timeout),
        follow_redirects=False,
        trust_env=False,
        transport=transport,
        headers={"user-agent": USER_AGENT, "accept-encoding": "identity"},
    )


def pinned_request(
    client: httpx.Client, checked: CheckedUrl, method: str, headers: Mapping[str, str], content: bytes
) -> httpx.Request:
    """A request to ``checked.address`` that names ``checked.host`` in Host and SNI."""
    url = checked.url.copy_with(host=str(checked.address))
    extensions = {}
    if checked.url.scheme == "https" and not checked.host_is_address:
        extensions["sni_hostname"] = checked.host
    all_headers = {**headers, "host": checked.host_header}
    return client.build_request(method, url, headers=all_headers, content=content, extensions=extensions)


def send_pinned(
    client: httpx.Client,
    checked: CheckedUrl,
    method: str,
    headers: Mapping[str, str],
    content: bytes,
    *,
    max_body_bytes: int = 1024,
    deadline: float | None = None,
) -> OutboundResponse:
    """Send once and read at most ``max_body_bytes`` of the answer, all within ``deadline`` seconds when
    given (the client's timeouts bound each read, not the whole exchange). Raises OutboundError."""
    request = pinned_request(client, checked, method, headers, content)
    watchdog = Deadline(deadline) if deadline is not None else None
    if watchdog is not None:
        request.extensions["trace"] = watchdog.trace
        watchdog.start()
    try:
        try:
            response = client.send(request, stream=True, follow_redirects=False)
        except httpx.TimeoutException as exc:
            raise OutboundError(f"timed out ({type(exc).__name__})") from exc
        except httpx.ConnectError as exc:
            raise OutboundError("could not connect") from exc
        except httpx.HTTPError as exc:
            if watchdog is not None and watchdog.expired:
                raise OutboundError(f"no complete answer within the {deadline:g} s deadline") from exc
            raise OutboundError(f"request failed ({type(exc).__name__})") from exc
        try:
            excerpt = _read_prefix(response, max_body_bytes)
        finally:
            response.close()
    finally:
        if watchdog is not None:
            watchdog.cancel()
    return OutboundResponse(response.status_code, dict(response.headers), excerpt)


class Deadline:
    """Cuts one exchange off after ``seconds``: a timer shuts the connection's socket down, which ends
    any read or write in progress. The socket comes from httpcore's ``trace`` extension, as the
    connection is made."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.expired = False
        self._lock = threading.Lock()
        self._socket: socket.socket | None = None
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True

    def start(self) -> None:
        self._timer.start()

    def cancel(self) -> None:
        self._timer.cancel()

    def trace(self, event: str, info: Mapping[str, Any]) -> None:
        if event != "connection.connect_tcp.complete":
            return
        stream = info.get("return_value")
        sock = stream.get_extra_info("socket") if stream is not None else None
        with self._lock:
            self._socket = sock if isinstance(sock, socket.socket) else None
            expired = self.expired
        if expired:
            self._shut()

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
        self._shut()

    def _shut(self) -> None:
        with self._lock:
            sock = self._socket
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


def _read_prefix(response: httpx.Response, limit: int) -> bytes:
    """The body's first ``limit`` bytes; a body that breaks off or times out keeps what arrived."""
    if response.is_stream_consumed:  # already read (an in-memory transport)
        return response.content[:limit]
    buffer = bytearray()
    try:
        for chunk in response.iter_raw():
            buffer += chunk
            if len(buffer) >= limit:
                break
    except httpx.HTTPError:
        pass
    return bytes(buffer[:limit])
