"""Webhook hosts resolved on the event loop (``domain.webhooks.host_resolution``), against a fake name
service: one overall deadline, a cap on distinct hosts, answers (and late answers) cached."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import pytest

from config.settings import load_settings
from domain.errors import InvalidWebhookUrl
from domain.webhooks.host_resolution import (
    MAX_PENDING_LOOKUPS,
    AnswerCache,
    ResolvedHosts,
    host_key,
    resolve_webhook_hosts,
)

pytestmark = pytest.mark.unit


class FakeNameService(asyncio.SelectorEventLoop):
    """An event loop whose ``getaddrinfo`` answers from a table, or hangs until told to answer."""

    def __init__(self, answers: dict[str, str | None], hanging: set[str]) -> None:
        super().__init__()
        self.answers = answers
        self.hanging = hanging
        self.release = asyncio.Event()
        self.asked: list[str] = []

    async def getaddrinfo(self, host: Any, port: Any, **_kwargs: Any) -> Any:  # type: ignore[override]
        self.asked.append(host)
        if host in self.hanging:
            await self.release.wait()
        address = self.answers.get(host)
        if address is None:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))]


def _run(loop: FakeNameService, coro: Any) -> Any:
    return loop.run_until_complete(coro)


def test_a_hanging_host_counts_as_unresolved_after_the_deadline_and_its_late_answer_is_kept() -> None:
    loop = FakeNameService({"fast.test": "93.184.216.34", "slow.test": "93.184.216.35"}, {"slow.test"})
    cache = AnswerCache()
    try:
        urls = ["https://fast.test/a", "https://slow.test/b", "https://fast.test/c", "http://10.0.0.1/"]
        resolved = _run(loop, resolve_webhook_hosts(urls, cache, timeout=0.05))
        assert resolved.answers == {("fast.test", 443): ("93.184.216.34",), ("slow.test", 443): None}
        loop.release.set()
        _run(loop, asyncio.sleep(0))
        _run(loop, asyncio.sleep(0))
        assert cache.get(("slow.test", 443)) == (True, ("93.184.216.35",))
        again = _run(loop, resolve_webhook_hosts(["https://slow.test/x"], cache, timeout=0.05))
        assert again.answers == {("slow.test", 443): ("93.184.216.35",)}
        assert loop.asked.count("slow.test") == 1 and loop.asked.count("fast.test") == 1
    finally:
        loop.close()


def test_hosts_past_the_cap_are_refused_with_their_own_code() -> None:
    loop = FakeNameService({f"h{i}.test": "93.184.216.34" for i in range(5)}, set())
    try:
        urls = [f"https://h{i}.test/" for i in range(5)]
        resolved = _run(loop, resolve_webhook_hosts(urls, AnswerCache(), max_hosts=3))
        assert len(resolved.answers) == 3 and resolved.over_cap == {("h3.test", 443), ("h4.test", 443)}
        assert sorted(loop.asked) == ["h0.test", "h1.test", "h2.test"]
    finally:
        loop.close()
    settings = load_settings(webhook_secrets="whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
    resolved.check("https://h0.test/ok", settings)
    with pytest.raises(InvalidWebhookUrl) as refused:
        resolved.check("https://h4.test/", settings)
    assert refused.value.code == "too_many_webhook_hosts"


def test_an_unresolved_host_is_refused_as_not_resolving() -> None:
    settings = load_settings(webhook_secrets="whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
    with pytest.raises(InvalidWebhookUrl, match="does not resolve"):
        ResolvedHosts(answers={("gone.test", 443): None}).check("https://gone.test/", settings)


def test_host_key_skips_literal_addresses_and_bad_urls() -> None:
    assert host_key("https://hooks.example.com:8443/x") == ("hooks.example.com", 8443)
    assert host_key("http://93.184.216.34/") is None
    assert host_key("http://[2001:db8::1]/") is None
    assert host_key("http://exa mple.com:99999/") is None


def test_requests_naming_a_host_being_looked_up_share_the_lookup() -> None:
    loop = FakeNameService({"slow.test": "93.184.216.35"}, {"slow.test"})
    cache = AnswerCache()

    async def two_requests() -> list[Any]:
        first = resolve_webhook_hosts(["https://slow.test/a"], cache, timeout=1.0)
        second = resolve_webhook_hosts(["https://slow.test/b"], cache, timeout=1.0)
        loop.call_later(0.01, loop.release.set)
        return list(await asyncio.gather(first, second))

    try:
        first, second = _run(loop, two_requests())
        assert first.answers == second.answers == {("slow.test", 443): ("93.184.216.35",)}
        assert loop.asked == ["slow.test"] and cache.pending == {}
    finally:
        loop.close()


def test_lookups_under_way_are_capped_per_process() -> None:
    hosts = [f"h{i}.test" for i in range(MAX_PENDING_LOOKUPS + 3)]
    loop = FakeNameService(dict.fromkeys(hosts, "93.184.216.34"), set(hosts))
    cache = AnswerCache()
    try:
        for start in range(0, len(hosts), 8):
            urls = [f"https://{host}/" for host in hosts[start : start + 8]]
            _run(loop, resolve_webhook_hosts(urls, cache, timeout=0.01))
        assert len(loop.asked) == MAX_PENDING_LOOKUPS  # the rest counted as not resolving, unasked
        loop.release.set()
        _run(loop, asyncio.sleep(0.01))
        assert cache.pending == {}
    finally:
        loop.close()
