"""The simulator's ASGI application: routing and the lifespan protocol.

Model endpoints are matched by the end of the path, so any base URL prefix works: ``/v1/chat/completions``,
``/chat/completions``, a gateway's ``/v1/api/openai/chat/completions`` or Azure's
``/openai/deployments/<model>/chat/completions?api-version=...`` (the deployment names the model when the
body does not). ``/v1/files`` and ``/v1/batches`` are OpenAI's Batch API (``simulator.batches_api``).
Unknown paths get an OpenAI-style 404, wrong methods a 405.
"""

from __future__ import annotations

import random
import time

from config.tiers import TierConfig
from simulator import admin
from simulator.asgi import Receive, Scope, Send, send_json
from simulator.batches_api import serve_batch_api
from simulator.chat import plan_chat
from simulator.embeddings import plan_embeddings
from simulator.errors import ApiError
from simulator.images import plan_image_generation
from simulator.model_call import Endpoint, serve_model_call
from simulator.ratelimit import Clock
from simulator.responses_api import plan_response
from simulator.settings import SimulatorSettings
from simulator.state import SimulatorState

MODEL_ENDPOINTS: tuple[tuple[str, Endpoint], ...] = (
    ("/chat/completions", Endpoint("/v1/chat/completions", "chat", plan_chat)),
    ("/embeddings", Endpoint("/v1/embeddings", "embeddings", plan_embeddings)),
    ("/images/generations", Endpoint("/v1/images/generations", "images", plan_image_generation)),
    ("/responses", Endpoint("/v1/responses", "responses", plan_response)),
)
_EXACT = {endpoint.path: endpoint for _, endpoint in MODEL_ENDPOINTS}


class SimulatorApp:
    """An ASGI callable serving the OpenAI-compatible endpoints and the simulator's own."""

    def __init__(self, state: SimulatorState) -> None:
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self._http(scope, receive, send)
        elif scope["type"] == "lifespan":
            await _lifespan(receive, send)

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope["path"]
        method: str = scope["method"]
        endpoint = _EXACT.get(path) or _by_suffix(path)
        if endpoint is not None:
            if method != "POST":
                await _not_allowed(method, path, send)
                return
            await serve_model_call(self.state, endpoint, scope, receive, send)
            return
        await self._other(path, method, scope, receive, send)

    async def _other(self, path: str, method: str, scope: Scope, receive: Receive, send: Send) -> None:
        state = self.state
        route = (method, path)
        if route == ("GET", "/_health"):
            await send_json(send, 200, {"status": "ok"})
        elif route == ("GET", "/_stats"):
            await admin.serve_stats(state, send)
        elif route == ("POST", "/_stats/reset"):
            await admin.serve_stats_reset(state, send)
        elif route == ("GET", "/_requests"):
            await admin.serve_recent(state, scope, send)
        elif path == "/_control" and method in ("GET", "POST"):
            await admin.serve_control(state, method, receive, send)
        elif method == "GET" and path.startswith("/_images/") and path.endswith(".png"):
            await admin.serve_image(send)
        elif await serve_batch_api(state, method, scope, receive, send):
            pass
        elif method == "GET" and path.rstrip("/").endswith("/models"):
            await admin.serve_models(state, None, send)
        elif method == "GET" and "/models/" in path:
            await admin.serve_models(state, path.split("/models/", 1)[1], send)
        else:
            error = ApiError(404, f"Invalid URL ({method} {path})", "invalid_request_error")
            await send_json(send, 404, error.body())


def _by_suffix(path: str) -> Endpoint | None:
    trimmed = path.rstrip("/")
    for suffix, endpoint in MODEL_ENDPOINTS:
        if trimmed.endswith(suffix):
            return endpoint
    return None


async def _not_allowed(method: str, path: str, send: Send) -> None:
    error = ApiError(405, f"Method not allowed ({method} {path}); use POST.", "invalid_request_error")
    await send_json(send, 405, error.body(), [("allow", "POST")])


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


def build_app(
    settings: SimulatorSettings,
    tiers: TierConfig | None = None,
    clock: Clock = time.monotonic,
    rng: random.Random | None = None,
    wall_clock: Clock = time.time,
) -> SimulatorApp:
    """The app for ``settings``; ``tiers``, ``clock``, ``rng`` and ``wall_clock`` may be injected by tests."""
    return SimulatorApp(SimulatorState(settings, tiers, clock, rng, wall_clock))
