"""Flower always runs behind basic auth: BATCHERY_FLOWER_USER and BATCHERY_FLOWER_PASSWORD.

The credentials reach Flower through its ``FLOWER_BASIC_AUTH`` environment variable (the same option
as its ``--basic-auth`` flag), and the broker URL (which may hold Redis's password) through Celery's
``CELERY_BROKER_URL``, so neither ever shows in the process list. In production a real
password is required; on a laptop a random one is made for the session and printed.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping

from config.errors import ConfigError
from config.settings import Environment, Settings, is_placeholder_secret


def flower_env(settings: Settings, env: Mapping[str, str]) -> tuple[dict[str, str], str | None]:
    """``env`` plus Flower's credentials and broker URL, and a note to print when the password was
    generated."""
    user = settings.flower_user
    password = settings.flower_password.get_secret_value()
    note = None
    if not password:
        if settings.environment == Environment.production:
            raise ConfigError(
                "BATCHERY_FLOWER_PASSWORD: required in production (Flower shows every worker and task)"
            )
        password = secrets.token_urlsafe(12)
        note = f"login {user} / {password}, made for this run; set BATCHERY_FLOWER_PASSWORD to choose one"
    elif settings.environment == Environment.production and is_placeholder_secret(password):
        raise ConfigError("BATCHERY_FLOWER_PASSWORD: a placeholder password is refused in production")
    if "," in password:
        raise ConfigError("BATCHERY_FLOWER_PASSWORD: must not contain ','")
    flower = {"FLOWER_BASIC_AUTH": f"{user}:{password}", "CELERY_BROKER_URL": settings.redis_url}
    return {**env, **flower}, note
