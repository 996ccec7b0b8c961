"""Resolving the webhook hosts a request names, on the event loop, before any thread does the rest.

A submission's webhook URLs are checked against the addresses their hosts resolve to
(``domain.webhooks.url_safety``). A blocking ``getaddrinfo`` there would hold one of the threads that
also serve other requests for as long as a slow (or hostile) nameserver likes. So the API resolves
first, asynchronously (``loop.getaddrinfo``), and the synchronous checks that follow read the answers:

- every distinct host of the request is resolved at once, under one overall deadline
  (``RESOLVE_TIMEOUT_SECONDS``); a host without an answer by then counts as not resolving;
- at most ``MAX_HOSTS_PER_REQUEST`` distinct hosts per request: a URL on any further host is refused
  with 422 ``too_many_webhook_hosts``;
- answers are kept for ``ANSWER_TTL_SECONDS`` (failures for ``FAILURE_TTL_SECONDS``) per process, and
  an answer that arrives after its request gave up is still kept, so repeating a slow host costs
  nothing; requests naming a host whose lookup is under way wait for that same lookup;
- at most ``MAX_PENDING_LOOKUPS`` lookups run at once per process: past that, a new host counts as not
  resolving, so a hostile name service can hold a bounded number of resolver threads, never a backlog.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import httpx

from config.settings import Settings
from domain.errors import InvalidWebhookUrl
from domain.webhooks.url_safety import CheckedUrl, check_webhook_url

MAX_HOSTS_PER_REQUEST = 16
RESOLVE_TIMEOUT_SECONDS = 2.0
ANSWER_TTL_SECONDS = 60.0
FAILURE_TTL_SECONDS = 10.0
MAX_PENDING_LOOKUPS = 32
_MAX_CACHED = 10_000

HostKey = tuple[str, int]
Answer = tuple[str, ...] | None
"""The addresses of a host, or None when it does not resolve (or did not in time)."""


class AnswerCache:
    """Answers per (host, port), each kept for a while; safe to share between threads."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._lock = threading.Lock()
        self._answers: dict[HostKey, tuple[Answer, float]] = {}
        self.pending: dict[HostKey, asyncio.Task[Answer]] = {}
        """Lookups under way (on the event loop), shared by every request that names the host."""

    def get(self, key: HostKey) -> tuple[bool, Answer]:
        """``(found, answer)``."""
        with self._lock:
            entry = self._answers.get(key)
            if entry is None or entry[1] < self.clock():
                return False, None
            return True, entry[0]

    def put(self, key: HostKey, answer: Answer) -> None:
        ttl = ANSWER_TTL_SECONDS if answer else FAILURE_TTL_SECONDS
        with self._lock:
            if len(self._answers) >= _MAX_CACHED:
                now = self.clock()
                self._answers = {k: v for k, v in self._answers.items() if v[1] >= now}
                if len(self._answers) >= _MAX_CACHED:
                    self._answers.clear()
            self._answers[key] = (answer, self.clock() + ttl)


def host_key(url: str) -> HostKey | None:
    """The (host, port) ``url`` would be resolved for, or None when it names no host to resolve."""
    try:
        parsed = httpx.URL(url)
        host = parsed.raw_host.decode("ascii").strip("[]")
        port = parsed.port or (443 if parsed.scheme == "https" else 80)
    except (httpx.InvalidURL, ValueError, TypeError, UnicodeError):
        return None
    if not 1 <= port <= 65535:
        return None  # refused by the check itself
    if not host or ":" in host or host.replace(".", "").isdigit():
        return None  # literal addresses need no resolving
    return (host, port)


@dataclass
class ResolvedHosts:
    """What one request's hosts resolved to; ``check`` is the webhook check the submission runs."""

    answers: dict[HostKey, Answer] = field(default_factory=dict)
    over_cap: set[HostKey] = field(default_factory=set)

    def resolver(self, host: str, port: int) -> list[str]:
        answer = self.answers.get((host, port))
        if answer is None:
            raise OSError(f"{host} did not resolve in time or at all")
        return list(answer)

    def check(self, url: str, settings: Settings) -> CheckedUrl:
        key = host_key(url)
        if key is not None and key in self.over_cap:
            raise InvalidWebhookUrl(
                f"webhook_url: one request may name at most {MAX_HOSTS_PER_REQUEST} distinct webhook hosts",
                param="webhook_url",
                code="too_many_webhook_hosts",
            )
        return check_webhook_url(url, settings, resolver=self.resolver)


async def resolve_webhook_hosts(
    urls: Iterable[str],
    cache: AnswerCache,
    *,
    timeout: float = RESOLVE_TIMEOUT_SECONDS,
    max_hosts: int = MAX_HOSTS_PER_REQUEST,
) -> ResolvedHosts:
    """Resolve the distinct hosts of ``urls`` (the first ``max_hosts``), all within ``timeout``."""
    resolved = ResolvedHosts()
    wanted: list[HostKey] = []
    for url in urls:
        key = host_key(url)
        if key is None or key in resolved.answers or key in wanted or key in resolved.over_cap:
            continue
        if len(resolved.answers) + len(wanted) >= max_hosts:
            resolved.over_cap.add(key)
            continue
        found, answer = cache.get(key)
        if found:
            resolved.answers[key] = answer
        else:
            wanted.append(key)
    if wanted:
        loop = asyncio.get_running_loop()
        tasks = {key: task for key in wanted if (task := _lookup_task(loop, key, cache)) is not None}
        if tasks:
            await asyncio.wait(tasks.values(), timeout=timeout)
        for key in wanted:
            task = tasks.get(key)
            resolved.answers[key] = task.result() if task is not None and task.done() else None
    return resolved


def _lookup_task(
    loop: asyncio.AbstractEventLoop, key: HostKey, cache: AnswerCache
) -> asyncio.Task[Answer] | None:
    """The lookup of ``key`` under way, or a new one; None when ``MAX_PENDING_LOOKUPS`` are under way
    already (a hostile name service then costs at most that many waiting threads, not a backlog)."""
    task = cache.pending.get(key)
    if task is not None and not task.done() and task.get_loop() is loop:
        return task
    if sum(not other.done() for other in cache.pending.values()) >= MAX_PENDING_LOOKUPS:
        return None
    task = loop.create_task(_lookup(loop, key, cache))
    cache.pending[key] = task

    def forget(done: asyncio.Task[Answer]) -> None:
        if cache.pending.get(key) is done:
            del cache.pending[key]

    task.add_done_callback(forget)
    return task


async def _lookup(loop: asyncio.AbstractEventLoop, key: HostKey, cache: AnswerCache) -> Answer:
    """Resolve one host and remember the answer, even when the request stopped waiting for it."""
    host, port = key
    try:
        infos = await loop.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP, flags=socket.AI_ADDRCONFIG
        )
        answer: Answer = tuple(str(info[4][0]) for info in infos) or None
    except (OSError, UnicodeError):
        answer = None
    cache.put(key, answer)
    return answer
