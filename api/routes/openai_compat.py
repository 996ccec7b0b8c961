"""Drop-in OpenAI endpoints: ``POST /v1/chat/completions``, ``/v1/embeddings``, ``/v1/images/generations``,
``/v1/responses`` and ``GET /v1/models``, so existing code changes only its ``base_url`` and key.

Each call becomes a durable job through the same path as ``POST /v1/jobs`` (``api.routes.jobs``: checks,
tier, estimates, quotas, fast-path enqueue), so it passes the global limiter, priorities and retries;
the HTTP request then waits (``api.completion_waiter``) and answers the upstream's own body and status,
with ``x-batchery-job-id`` and the final attempt's ``x-request-id``. Headers:

- ``x-batchery-timeout``: seconds to wait (default ``openai_wait_seconds``); when they pass, the answer
  is ``202`` with the job and a ``Location`` to poll: the job goes on and its result is kept.
- ``x-batchery-priority``: the job's priority (-100 to 100).
- ``x-batchery-cancel-on-disconnect: true``: cancel the job if the client goes away (by default the job
  completes and is stored anyway).
- ``Idempotency-Key``: as on ``POST /v1/jobs``; a repeated call with the same key waits for the same job.

Streaming (``stream: true`` on chat and Responses) answers ``text/event-stream``: the upstream's events
as the worker reads them, relayed through Redis (``api.stream_answer``), while the job stores the stream
aggregated. Embeddings and images refuse ``stream`` with 422 ``streaming_unsupported``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Header, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.concurrency import run_in_threadpool

from api.admission import release_admission
from api.auth import require_scope
from api.completion_waiter import CompletionWaiter, Ended, database_poll
from api.deps import EnqueuerDep, JobCountersDep, KeyIdDep, SessionDep, SettingsDep, TenantDep
from api.presenters import job_out
from api.routes.jobs import _submit, cancel_job
from api.stream_answer import RelayedStream, StreamReader, replayed_events
from api.webhook_hosts import webhook_check
from api.window_rooms import WindowRoomsDep
from domain.batches.schemas import Endpoint, job_kind_for
from domain.errors import NotFound, ServiceError
from domain.jobs import repository
from domain.jobs.schemas import ErrorBody, JobCreate
from domain.jobs.streaming import client_wants_usage, stream_mode
from domain.status import FINISHED_JOB_STATUSES, JobKind, JobStatus
from domain.storage.models import Job

_ERRORS: dict[int | str, dict[str, object]] = {
    code: {"model": ErrorBody} for code in (400, 401, 403, 404, 409, 413, 414, 422, 429, 503)
}
router = APIRouter(prefix="/v1", tags=["openai"], responses=_ERRORS)

_WRITE = [require_scope("jobs:write")]
OpenAIBody = Annotated[dict[str, Any], Body()]
Timeout = Annotated[float | None, Header(alias="x-batchery-timeout", gt=0, allow_inf_nan=False)]
Priority = Annotated[int, Header(alias="x-batchery-priority", ge=-100, le=100)]
CancelOnDisconnect = Annotated[bool, Header(alias="x-batchery-cancel-on-disconnect")]


def completion_waiter(request: Request) -> CompletionWaiter:
    """The process's waiter, made on first use (``close_completion_waiter`` ends it)."""
    state = request.app.state
    waiter: CompletionWaiter | None = getattr(state, "completion_waiter", None)
    if waiter is None:
        settings = state.settings
        waiter = CompletionWaiter(
            settings.redis_url,
            settings.redis_prefix,
            poll_seconds=settings.openai_poll_seconds,
            ended=database_poll(state.sessions),
        )
        state.completion_waiter = waiter
    return waiter


async def close_completion_waiter(state: Any) -> None:
    waiter: CompletionWaiter | None = getattr(state, "completion_waiter", None)
    if waiter is not None:
        await waiter.close()


class _Call:
    """One drop-in call: submit the job, wait for it, answer as the upstream did."""

    def __init__(
        self,
        request: Request,
        session: SessionDep,
        settings: SettingsDep,
        enqueuer: EnqueuerDep,
        tenant: TenantDep,
        counters: JobCountersDep,
        rooms: WindowRoomsDep,
        key_id: KeyIdDep,
        x_batchery_timeout: Timeout = None,
        x_batchery_priority: Priority = 0,
        x_batchery_cancel_on_disconnect: CancelOnDisconnect = False,
        idempotency_key: Annotated[str | None, Header(max_length=255)] = None,
    ) -> None:
        self.request, self.session, self.settings = request, session, settings
        self.enqueuer, self.tenant, self.counters, self.rooms = enqueuer, tenant, counters, rooms
        self.key_id = key_id
        self.timeout = min(
            x_batchery_timeout or settings.openai_wait_seconds, settings.openai_max_wait_seconds
        )
        self.priority = x_batchery_priority
        self.cancel_on_disconnect = x_batchery_cancel_on_disconnect
        self.idempotency_key = idempotency_key

    async def answer(self, kind: JobKind, body: dict[str, Any]) -> Response:
        check = await webhook_check(self.request, [])
        job_create = JobCreate(kind=kind, request=body, priority=self.priority)
        try:
            submitted, _ = await run_in_threadpool(
                _submit,
                job_create,
                self.session,
                self.settings,
                self.enqueuer,
                self.tenant,
                self.counters,
                self.rooms,
                self.idempotency_key,
                check,
                self.key_id,
            )
        except ServiceError as exc:
            raise _named_as_sent(exc) from None
        release_admission(self.request.scope)  # stored: the wait below holds no admission slot
        waiter = completion_waiter(self.request)
        wait = asyncio.ensure_future(waiter.wait(submitted.id, self.timeout))
        if stream_mode(kind.value, body) is not None:
            return await self._stream(submitted.id, kind, body, wait)
        if self.cancel_on_disconnect:
            await self._race_disconnect(wait, submitted.id)
        ended = await wait
        if ended is not None and ended.result_json is not None:  # carried by the notice
            headers = _answer_headers(submitted.id, ended.request_id)
            return Response(ended.result_json, 200, headers=headers, media_type="application/json")
        job = await run_in_threadpool(self._read, submitted.id)
        if ended is None and job.status not in FINISHED_JOB_STATUSES:
            return JSONResponse(
                job_out(job).model_dump(mode="json"),
                status_code=202,
                headers={"location": f"/v1/jobs/{job.id}", "x-batchery-job-id": job.id},
            )
        request_id = ended.request_id if ended is not None else await waiter.request_id(job.id)
        return _final(job, request_id)

    async def _stream(
        self, job_id: str, kind: JobKind, body: dict[str, Any], wait: asyncio.Future[Ended | None]
    ) -> Response:
        """``stream: true``: the relayed events as SSE (``api.stream_answer``), or, when the job ended
        before its first event, the answer a non-streamed call gets."""
        relayed = RelayedStream(
            stream_reader(self.request), job_id, kind=kind.value, wants_usage=client_wants_usage(body)
        )
        if not await relayed.first(wait, self.timeout):
            job = await run_in_threadpool(self._read, job_id)
            if job.status not in FINISHED_JOB_STATUSES:
                wait.cancel()
                return JSONResponse(
                    job_out(job).model_dump(mode="json"),
                    status_code=202,
                    headers={"location": f"/v1/jobs/{job.id}", "x-batchery-job-id": job.id},
                )
            request_id = await completion_waiter(self.request).request_id(job.id)
            if job.status == JobStatus.succeeded.value and isinstance(job.result, dict):
                replay = replayed_events(kind.value, job.result, relayed.wants_usage)
                return StreamingResponse(iter(replay), media_type="text/event-stream", headers=_sse(job.id))
            return _final(job, request_id)

        async def events() -> AsyncIterator[bytes]:
            finished = False
            try:
                async for chunk in relayed.events(idle_timeout=self.timeout):
                    yield chunk
                finished = True
            finally:
                wait.cancel()
                if not finished and self.cancel_on_disconnect:
                    await run_in_threadpool(self._cancel, job_id)

        return StreamingResponse(events(), media_type="text/event-stream", headers=_sse(job_id))

    async def _race_disconnect(self, wait: asyncio.Future[Ended | None], job_id: str) -> None:
        """Until ``wait`` ends: when the client goes away, cancel the job."""
        while not wait.done():
            await asyncio.wait({wait}, timeout=1.0)
            if not wait.done() and await self.request.is_disconnected():
                await run_in_threadpool(self._cancel, job_id)
                wait.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await wait
                return

    def _cancel(self, job_id: str) -> None:
        with self.request.app.state.sessions() as session:
            cancel_job(job_id, session, self.settings, self.enqueuer, self.tenant, self.counters)

    def _read(self, job_id: str) -> Job:
        with self.request.app.state.sessions() as session:
            job = repository.get_job(session, job_id, tenant_id=self.tenant)
            session.expunge(job)
            return job


_REQUEST = "request."


def _named_as_sent(exc: ServiceError) -> ServiceError:
    """A drop-in call's body is its job's ``request``: an error names the parameter as the caller sent
    it (``temperature``, not ``request.temperature``)."""
    if exc.param is not None and exc.param.startswith(_REQUEST):
        exc.param = exc.param.removeprefix(_REQUEST)
        exc.args = (exc.message.removeprefix(_REQUEST), *exc.args[1:])
    return exc


def _sse(job_id: str) -> dict[str, str]:
    return {"x-batchery-job-id": job_id, "cache-control": "no-cache", "x-accel-buffering": "no"}


def stream_reader(request: Request) -> StreamReader:
    """The process's reader of relayed streams, made on first use."""
    state = request.app.state
    reader: StreamReader | None = getattr(state, "stream_reader", None)
    if reader is None:
        reader = StreamReader(state.settings.redis_url, state.settings.redis_prefix)
        state.stream_reader = reader
    return reader


async def close_stream_reader(state: Any) -> None:
    reader: StreamReader | None = getattr(state, "stream_reader", None)
    if reader is not None:
        await reader.close()


def _answer_headers(job_id: str, request_id: str) -> dict[str, str]:
    headers = {"x-batchery-job-id": job_id}
    if request_id:
        headers["x-request-id"] = request_id
    return headers


def _final(job: Job, request_id: str) -> JSONResponse:
    headers = _answer_headers(job.id, request_id)
    if job.status == JobStatus.succeeded.value:
        return JSONResponse(job.result, status_code=200, headers=headers)
    if job.status == JobStatus.cancelled.value:
        body = _error("the job was cancelled before it finished", "job_cancelled", "job_cancelled")
        return JSONResponse(body, status_code=409, headers=headers)
    status = job.error_status if job.error_status is not None and 400 <= job.error_status < 600 else 502
    stored = job.result
    if isinstance(stored, dict) and isinstance(stored.get("error"), dict):
        return JSONResponse(stored, status_code=status, headers=headers)
    message = job.error_message or "the upstream call failed"
    return JSONResponse(_error(message, job.error_type or "upstream_error", None), status, headers=headers)


def _error(message: str, kind: str, code: str | None) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


CallDep = Annotated[_Call, Depends()]


@router.post("/chat/completions", dependencies=_WRITE)
async def chat_completions(body: OpenAIBody, call: CallDep) -> Response:
    """OpenAI's chat completions (a vision job when a message carries an image)."""
    return await call.answer(job_kind_for(Endpoint.chat, body), body)


@router.post("/embeddings", dependencies=_WRITE)
async def embeddings(body: OpenAIBody, call: CallDep) -> Response:
    return await call.answer(JobKind.embedding, body)


@router.post("/images/generations", dependencies=_WRITE)
async def images_generations(body: OpenAIBody, call: CallDep) -> Response:
    return await call.answer(JobKind.image, body)


@router.post("/responses", dependencies=_WRITE)
async def responses(body: OpenAIBody, call: CallDep) -> Response:
    return await call.answer(JobKind.response, body)


def _model(name: str, tier: str) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": 0, "owned_by": f"batchery:{tier}"}


@router.get("/models", dependencies=[require_scope("jobs:read")])
async def list_models(settings: SettingsDep) -> dict[str, Any]:
    """The models of the configured tiers, in OpenAI's list shape."""
    data = [_model(name, tier.name) for tier in settings.tiers.tiers.values() for name in tier.models]
    return {"object": "list", "data": sorted(data, key=lambda model: str(model["id"]))}


@router.get("/models/{model}", dependencies=[require_scope("jobs:read")])
async def get_model(model: str, settings: SettingsDep) -> dict[str, Any]:
    tier = settings.tiers.tier_for(model)
    if tier is None or model not in tier.models:
        raise NotFound(f"no model {model!r}", param="model")
    return _model(model, tier.name)
