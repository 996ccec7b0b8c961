"""Adapters to the outside processes and libraries that both the API and the workers use: the Celery
app's configuration and broker transport, the health check, and the process's logging set-up. (Redis
key names are built in ``domain.storage.redis_keys``: the metrics store in ``domain`` needs them too.)

May import: ``config`` and ``domain``. Imported by ``api``, ``workers`` and ``cli``.
"""
