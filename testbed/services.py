"""The real services the integration and e2e tests use. A missing service fails the test; it never skips."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
import redis

PG_ADMIN_URL = os.environ.get("BATCHERY_TEST_PG_ADMIN", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_HOST = os.environ.get("BATCHERY_TEST_REDIS_HOST", "127.0.0.1")
REDIS_PORT = int(os.environ.get("BATCHERY_TEST_REDIS_PORT", "6379"))


@contextmanager
def fresh_postgres_database() -> Iterator[str]:
    """A new, empty database for one test session; dropped afterwards. Yields its SQLAlchemy URL."""
    name = f"batchery_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}".replace("postgresql://", "postgresql+psycopg://", 1)
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def private_redis_db() -> Iterator[str]:
    """A Redis logical database (1-15) no other test session is using, flushed before and after."""
    admin = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=0, socket_timeout=5)
    admin.ping()
    token = uuid.uuid4().hex
    for index in range(1, 16):
        lock = f"batchery-test-db-lock:{index}"
        if admin.set(lock, token, nx=True, ex=3600):
            break
    else:
        raise RuntimeError("every Redis test database (1-15) is in use")
    client = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=index)
    client.flushdb()
    try:
        yield f"redis://{REDIS_HOST}:{REDIS_PORT}/{index}"
    finally:
        client.flushdb()
        client.close()
        if admin.get(lock) == token.encode():
            admin.delete(lock)
        admin.close()
