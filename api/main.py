"""``create_app(settings)``: the FastAPI application. Nothing connects until it starts."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import redis
from fastapi import FastAPI

from api.admission import AdmittingFastAPI
from api.auth import warn_if_auth_disabled
from api.body_limit import BodyLimitMiddleware
from api.deps import flush_job_counters
from api.enqueue import Enqueuer
from api.errors import install_error_handlers
from api.request_limits import REFUSALS, RequestTargetMiddleware
from api.routes import admin_budgets, batches, files, health, jobs, jobs_bulk, openai_compat, webhooks
from api.routes import metrics as metrics_routes
from api.routes import usage as usage_routes
from api.threads import install_service_threads
from config.settings import Settings, get_settings
from domain.storage.sessions import make_engine, make_session_factory
from domain.tokens.text import warm_up as warm_up_tokenizers
from infra.gc_freeze import freeze_long_lived
from infra.log_setup import setup_process_logging


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    setup_process_logging(settings)
    warn_if_auth_disabled(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = make_engine(settings.database_url, pool_size=20, idle_ping=True)
        app.state.engine = engine
        app.state.sessions = make_session_factory(engine)
        app.state.enqueuer = Enqueuer(settings)
        app.state.redis = redis.Redis.from_url(settings.redis_url, socket_timeout=2, socket_connect_timeout=2)
        install_service_threads(app)
        warm_up_tokenizers()  # the encodings load once here, not in the first request's estimate
        freeze_long_lived()  # the app, its routes and schemas, the libraries: out of later collections
        try:
            yield
        finally:
            flush_job_counters(app.state)
            await openai_compat.close_completion_waiter(app.state)
            await openai_compat.close_stream_reader(app.state)
            app.state.enqueuer.close()
            app.state.redis.close()
            engine.dispose()

    app = AdmittingFastAPI(
        title="batchery",
        version="0.1.0",
        summary="A self-hosted job queue for OpenAI-compatible APIs.",
        lifespan=lifespan,
        responses=REFUSALS,
    )
    app.state.settings = settings
    install_error_handlers(app)
    app.include_router(health.router)
    app.include_router(jobs.router)
    app.include_router(jobs_bulk.router)
    app.include_router(files.router)
    app.include_router(batches.router)
    app.include_router(webhooks.router)
    app.include_router(usage_routes.router)
    app.include_router(admin_budgets.router)
    app.include_router(metrics_routes.router)
    app.include_router(openai_compat.router)  # drop-in OpenAI endpoints
    app.add_middleware(
        BodyLimitMiddleware, max_bytes=settings.max_body_bytes, exempt_prefixes=("/v1/files",)
    )  # uploads are limited while they stream (api.routes.files)
    app.add_middleware(RequestTargetMiddleware, max_length=settings.max_url_length)
    app.admit(  # outermost: the excess is refused before anything else runs (README: Overload)
        max_writes=settings.api_max_inflight_writes,
        max_reads=settings.api_max_inflight_reads,
        max_wait_seconds=settings.api_admission_wait_ms / 1000,
        retry_after_seconds=settings.api_retry_after_seconds,
    )
    return app
