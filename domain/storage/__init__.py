"""Storage: the engine, the ORM models and sessions. The ground floor of ``domain``.

May import: ``config``, ``domain.errors``, ``domain.status``, ``domain.ids``. Nothing above it.
"""
