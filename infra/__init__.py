"""Adapters to the outside processes and libraries that both the API and the workers use: the Celery
app's configuration and broker transport, Redis key names, and the process's logging set-up.

May import: ``config`` and ``domain``. Imported by ``api``, ``workers`` and ``cli``.
"""
