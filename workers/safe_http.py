"""Sending to a user-supplied URL over exactly the address the guard checked.

``domain.webhooks.url_safety.check_url`` resolves the name once and checks every address. The request built
here goes to that address (the URL's host is replaced by the IP), while the ``Host`` header and the
TLS server name (SNI, also used to verify the certificate) keep the original name. The HTTP client
never resolves the name itself, so a DNS answer that changes after the check goes nowhere.

The client never follows redirects, ignores proxy and certificate environment variables
(``trust_env=False``), keeps no idle connection (a pooled connection opened for one name must never
carry a request for another), asks for an uncompressed answer and reads at most a few bytes of it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

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


def make_client(timeout: float, transport: httpx.BaseTransport | None = None) -> httpx.Client:
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
) -> OutboundResponse:
    """Send once and read at most ``max_body_bytes`` of the answer. Raises OutboundError."""
    request = pinned_request(client, checked, method, headers, content)
    try:
        response = client.send(request, stream=True, follow_redirects=False)
    except httpx.TimeoutException as exc:
        raise OutboundError(f"timed out ({type(exc).__name__})") from exc
    except httpx.ConnectError as exc:
        raise OutboundError("could not connect") from exc
    except httpx.HTTPError as exc:
        raise OutboundError(f"request failed ({type(exc).__name__})") from exc
    try:
        excerpt = _read_prefix(response, max_body_bytes)
    finally:
        response.close()
    return OutboundResponse(response.status_code, dict(response.headers), excerpt)


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
