"""The guard for every outbound URL a user supplies (webhooks today): resolve once, check every address.

A URL passes only when:

- its scheme is ``http`` or ``https`` and it carries no ``user:password@``;
- its port, when given, is a real TCP port (1 to 65535);
- its host resolves (once) and *every* address is globally routable (``ip.is_global``), after mapping
  IPv4-mapped IPv6 (``::ffff:a.b.c.d``) back to IPv4;
- no address is multicast, NAT64 (``64:ff9b::/96``, ``64:ff9b:1::/48``), 6to4 (``2002::/16``) or
  IPv4-compatible IPv6 (``::/96``), which can all reach private IPv4 hosts;
- unless the address lies in an allow-listed network (``BATCHERY_WEBHOOK_ALLOWED_NETWORKS``), which
  is how tests and private deployments reach receivers on loopback or internal networks.

The result names the address that was checked. The sender connects to exactly that address
(``workers.safe_http``) instead of letting the HTTP client resolve the name again, so an answer that
changes between the check and the connection (DNS rebinding) cannot redirect the request.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import httpx

from config.errors import BatcheryError
from config.settings import Settings
from domain.errors import InvalidWebhookUrl

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], Sequence[str]]
"""``(host, port) -> addresses`` as text; raises OSError when the name does not resolve."""

ALLOWED_SCHEMES = frozenset({"http", "https"})
BLOCKED_NETWORKS: tuple[IPNetwork, ...] = (
    ipaddress.ip_network("64:ff9b::/96"),  # NAT64 well-known prefix
    ipaddress.ip_network("64:ff9b:1::/48"),  # NAT64 local-use prefix
    ipaddress.ip_network("2002::/16"),  # 6to4
    ipaddress.ip_network("::/96"),  # IPv4-compatible IPv6 (deprecated)
)
_HOST_CHARS = re.compile(r"^[A-Za-z0-9.\-:]+$", re.ASCII)


class UnsafeUrl(BatcheryError):
    """The URL may not be called: it is malformed or points at a non-public address."""

    def __init__(self, message: str | None = None, *, permanent: bool = True) -> None:
        super().__init__(message)
        self.permanent = permanent
        """True when the URL itself is wrong; False when only its name's current answer is refused."""


@dataclass(frozen=True, slots=True)
class CheckedUrl:
    """A URL that passed the guard, with the one address the request must go to."""

    url: httpx.URL
    host: str
    """The host as sent in ``Host`` and TLS SNI (IDNA-encoded, no brackets)."""
    port: int
    address: IPAddress
    addresses: tuple[IPAddress, ...]

    @property
    def host_header(self) -> str:
        default = 443 if self.url.scheme == "https" else 80
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.url.port in (None, default) else f"{host}:{self.port}"

    @property
    def host_is_address(self) -> bool:
        return _literal_address(self.host) is not None


def system_resolver(host: str, port: int) -> list[str]:
    """Every address the system resolver gives for ``host`` (TCP), in its order."""
    infos = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP, flags=socket.AI_ADDRCONFIG
    )
    return [str(info[4][0]) for info in infos]


def check_url(
    url: str,
    *,
    allowed_networks: Sequence[IPNetwork] = (),
    resolver: Resolver = system_resolver,
) -> CheckedUrl:
    """Parse and check ``url``; resolve its host once. Raises UnsafeUrl with the reason."""
    parsed = _parse(url)
    host = parsed.raw_host.decode("ascii").strip("[]")
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    literal = _literal_address(host)
    if literal is not None:
        addresses: tuple[IPAddress, ...] = (literal,)
    else:
        addresses = _resolve(host, port, resolver)
    for address in addresses:
        reason = refusal_reason(address, allowed_networks)
        if reason is not None:
            subject = host if literal is not None else f"{host} resolves to {address}, which"
            raise UnsafeUrl(f"{subject} {reason}", permanent=literal is not None)
    return CheckedUrl(url=parsed, host=host, port=port, address=addresses[0], addresses=addresses)


def check_webhook_url(url: str, settings: Settings, *, resolver: Resolver = system_resolver) -> CheckedUrl:
    """The submission-time check of a job's ``webhook_url``: 422 ``invalid_webhook_url`` with the reason.
    The sender checks again at send time, since a name's answer can change."""
    if not settings.webhook_signing_keys:
        raise InvalidWebhookUrl(
            "webhooks are not configured on this server (no BATCHERY_WEBHOOK_SECRETS)", param="webhook_url"
        )
    try:
        return check_url(url, allowed_networks=settings.webhook_allowed_networks, resolver=resolver)
    except UnsafeUrl as exc:
        raise InvalidWebhookUrl(f"webhook_url: {exc.message}", param="webhook_url") from exc


def refusal_reason(address: IPAddress, allowed_networks: Sequence[IPNetwork] = ()) -> str | None:
    """Why ``address`` may not be called, or None when it may."""
    address = unmap(address)
    if any(address.version == net.version and address in net for net in allowed_networks):
        return None
    if not address.is_global:
        return "is not a public address (loopback, private, link-local or reserved)"
    if any(address.version == net.version and address in net for net in BLOCKED_NETWORKS):
        return "is a NAT64, 6to4 or IPv4-compatible address, which can reach private networks"
    if address.is_multicast:
        return "is a multicast address"
    return None


def unmap(address: IPAddress) -> IPAddress:
    """``::ffff:a.b.c.d`` becomes ``a.b.c.d``; other addresses are returned unchanged."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _parse(url: str) -> httpx.URL:
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, ValueError, TypeError) as exc:
        raise UnsafeUrl(f"not a valid URL: {exc}") from exc
    if parsed.scheme not in ALLOWED_SCHEMES:
        raise UnsafeUrl(f"the scheme must be http or https, not {parsed.scheme or 'missing'!r}")
    if parsed.userinfo:
        raise UnsafeUrl("the URL may not carry a user name or password (user:pass@host)")
    host = parsed.raw_host.decode("ascii", errors="replace").strip("[]")
    if not host:
        raise UnsafeUrl("the URL has no host")
    if not _HOST_CHARS.match(host):
        raise UnsafeUrl("the host has characters a host name cannot have")
    if parsed.port is not None and not 1 <= parsed.port <= 65535:
        raise UnsafeUrl(f"the port must be between 1 and 65535, not {parsed.port}")
    return parsed


def _literal_address(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def _resolve(host: str, port: int, resolver: Resolver) -> tuple[IPAddress, ...]:
    try:
        answers = list(resolver(host, port))
    except (OSError, UnicodeError) as exc:
        raise UnsafeUrl(f"the host {host} does not resolve", permanent=False) from exc
    addresses: list[IPAddress] = []
    for answer in answers:
        try:
            address = ipaddress.ip_address(answer.split("%", 1)[0])
        except ValueError as exc:
            raise UnsafeUrl(f"the host {host} resolves to something that is not an address") from exc
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise UnsafeUrl(f"the host {host} has no address", permanent=False)
    return tuple(addresses)
