"""Threads kept apart for authentication and health, so user work can never starve them.

Routes run their blocking work on the shared worker threads (Starlette's ``run_in_threadpool``, 40 by
default). Requests of one tenant can fill all of them; key lookups and ``/readyz`` then would wait
behind that work and every tenant would see the API freeze. They run instead on their own
``SERVICE_THREADS`` threads (an ``anyio.CapacityLimiter`` made when the app starts), and ``/healthz``
runs on no thread at all.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import anyio.to_thread
from anyio import CapacityLimiter
from fastapi import FastAPI, Request

SERVICE_THREADS = 8

T = TypeVar("T")


def install_service_threads(app: FastAPI) -> None:
    """Make the app's own limiter (call from the lifespan, on the event loop)."""
    app.state.service_threads = CapacityLimiter(SERVICE_THREADS)


async def run_on_service_threads(request: Request, fn: Callable[..., T], *args: object) -> T:
    """``fn(*args)`` on a service thread (the shared threads when the app was not started)."""
    limiter: CapacityLimiter | None = getattr(request.app.state, "service_threads", None)
    return await anyio.to_thread.run_sync(fn, *args, limiter=limiter)
