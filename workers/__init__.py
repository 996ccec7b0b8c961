"""Celery workers: the tasks, the upstream client, the retry policy and the shared rate limiter."""
