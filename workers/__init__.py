"""Celery workers: the tasks, the upstream client, the retry policy and the shared rate limiter.

May import: ``config``, ``domain`` and ``infra``. Never ``api``.
"""
