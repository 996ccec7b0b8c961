"""``create_app(settings)``: the FastAPI application. Nothing connects until it starts."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import redis
from fastapi import FastAPI

from api.body_limit import BodyLimitMiddleware
from api.enqueue import Enqueuer
from api.errors import install_error_handlers
from api.routes import health, jobs
from config.settings import Settings, get_settings
from domain.db import make_engine, make_session_factory


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = make_engine(settings.database_url, pool_size=20)
        app.state.engine = engine
        app.state.sessions = make_session_factory(engine)
        app.state.enqueuer = Enqueuer(settings)
        app.state.redis = redis.Redis.from_url(settings.redis_url, socket_timeout=2, socket_connect_timeout=2)
        try:
            yield
        finally:
            app.state.enqueuer.close()
            app.state.redis.close()
            engine.dispose()

    app = FastAPI(
        title="batchery",
        version="0.1.0",
        summary="A self-hosted job queue for OpenAI-compatible APIs.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    install_error_handlers(app)
    app.include_router(health.router)
    app.include_router(jobs.router)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    return app
