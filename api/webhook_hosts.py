"""The webhook check a route hands to its worker thread: hosts resolved first, on the event loop.

``await webhook_check(request, urls)`` resolves the distinct hosts of ``urls`` asynchronously
(``domain.webhooks.host_resolution``: one short overall deadline, a cap on distinct hosts per request,
answers cached per process) and answers the check function for ``Submission`` and the batch route, which
then runs without any blocking name lookup.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from fastapi import Request

from config.settings import Settings
from domain.jobs.submission import WebhookCheck
from domain.webhooks.host_resolution import AnswerCache, resolve_webhook_hosts
from domain.webhooks.url_safety import check_webhook_url


def answer_cache(request: Request) -> AnswerCache:
    """This process's cache of webhook host answers (made on first use)."""
    state = request.app.state
    cache: AnswerCache | None = getattr(state, "webhook_answers", None)
    if cache is None:
        cache = AnswerCache()
        state.webhook_answers = cache
    return cache


async def webhook_check(request: Request, urls: Iterable[Any]) -> WebhookCheck:
    """The check for the webhook URLs among ``urls`` (non-strings are ignored: validation refuses them)."""
    settings: Settings = request.app.state.settings
    named = [url for url in urls if isinstance(url, str)]
    if not named or not settings.webhook_signing_keys:
        return check_webhook_url  # nothing to resolve: refused before any lookup, or never called
    resolved = await resolve_webhook_hosts(named, answer_cache(request))
    return resolved.check
