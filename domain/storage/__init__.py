"""Storage: the engine, the ORM models and sessions, the dialect object (where PostgreSQL and SQLite
differ), the worker's direct statements, and every Redis key name. The ground floor of ``domain``.

May import: ``config``, ``domain.errors``, ``domain.status``, ``domain.ids``. Nothing above it.
"""
