"""The simulator's own endpoints (no API key needed) and the model list.

===========================  ===========================================================================
``GET /_health``             ``{"status": "ok"}``
``GET /_stats``              counters (shape in ``simulator.stats``)
``POST /_stats/reset``       zero the counters; answers the fresh counters
``GET /_requests``           the last calls, newest last: ``?limit=N`` (default 100, at most 1000),
                             ``&user=U`` or ``&request_id=R`` to keep only those
``GET /_control``            the current settings
``POST /_control``           change runtime settings (names as in ``simulator.settings``), and/or
                             ``{"reset_limits": true}`` (all budgets full again),
                             ``{"reset_directives": true}`` (forget ``times=N`` counts),
                             ``{"expire_next_batches": N}`` (the next N batches created expire);
                             answers the settings, or 400 naming the bad field
``GET /_images/<id>.png``    the tiny PNG that image URLs point at
``GET /v1/models``           the models of the tiers file (``/v1/models/<id>`` for one)
===========================  ===========================================================================
"""

from __future__ import annotations

import json
from urllib.parse import parse_qs

from simulator.asgi import BodyTooLargeError, Receive, Scope, Send, read_body, send_bytes, send_json
from simulator.batches_api import batch_summary
from simulator.errors import invalid_request, model_not_found
from simulator.png import tiny_png
from simulator.settings import SettingsError
from simulator.state import SimulatorState

_PNG_TYPE = (b"content-type", b"image/png")
_MAX_RECENT = 1000


async def serve_stats(state: SimulatorState, send: Send) -> None:
    await send_json(send, 200, _stats(state))


async def serve_stats_reset(state: SimulatorState, send: Send) -> None:
    state.stats.reset()
    await send_json(send, 200, _stats(state))


def _stats(state: SimulatorState) -> dict[str, object]:
    snapshot = state.stats.snapshot()
    snapshot["batch"].update(batch_summary(state))
    return snapshot


async def serve_recent(state: SimulatorState, scope: Scope, send: Send) -> None:
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    try:
        limit = int(query.get("limit", ["100"])[0])
    except ValueError:
        error = invalid_request("Invalid 'limit': expected an integer.", "limit")
        await send_json(send, 400, error.body())
        return
    user = query.get("user", [None])[0]
    request_id = query.get("request_id", [None])[0]
    calls = state.stats.recent_calls(_MAX_RECENT)
    if user is not None:
        calls = [call for call in calls if call["user"] == user]
    if request_id is not None:
        calls = [call for call in calls if request_id in (call["request_id"], call["client_request_id"])]
    kept = calls[-limit:] if limit > 0 else []
    await send_json(send, 200, {"object": "list", "data": kept})


async def serve_control(state: SimulatorState, method: str, receive: Receive, send: Send) -> None:
    if method == "POST":
        try:
            changes = json.loads(await read_body(receive, 1024 * 1024) or b"{}")
            if not isinstance(changes, dict):
                raise SettingsError("body: expected a JSON object")
            state.control(changes)
        except (ValueError, BodyTooLargeError) as exc:
            message = str(exc) if isinstance(exc, SettingsError) else f"body: not valid JSON ({exc})"
            field = message.split(":", 1)[0]
            await send_json(send, 400, invalid_request(message, field, "invalid_value").body())
            return
    await send_json(send, 200, {**state.settings.public(), "expire_next_batches": state.expire_next_batches})


async def serve_image(send: Send) -> None:
    await send_bytes(send, 200, tiny_png(), content_type=_PNG_TYPE)


async def serve_models(state: SimulatorState, model: str | None, send: Send) -> None:
    if model is None:
        data = [_model_object(name) for name in state.table.known_models]
        await send_json(send, 200, {"object": "list", "data": data})
    elif state.table.rule_for(model) is not None:
        await send_json(send, 200, _model_object(model))
    else:
        error = model_not_found(model)
        await send_json(send, error.status, error.body())


def _model_object(name: str) -> dict[str, object]:
    return {"id": name, "object": "model", "created": 1_700_000_000, "owned_by": "batchery-simulator"}
