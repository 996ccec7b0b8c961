"""The Celery application, built from settings: one queue per tier, JSON only, late acks, prefetch 1.

``create_celery(settings)`` is the factory; ``workers.tasks`` registers the tasks on it. The module
attribute ``app`` that the ``celery`` command line needs is created lazily by ``workers.entry``.
"""

from __future__ import annotations

from celery import Celery
from kombu import Queue  # type: ignore[attr-defined]

from config.settings import Settings
from infra.celery_conf import CONTROL_QUEUE, WEBHOOK_QUEUE, celery_config
from workers.task_events import install_batched_task_events


def create_celery(settings: Settings) -> Celery:
    app = Celery("batchery", set_as_current=True)
    app.conf.update(celery_config(settings))
    names = [*settings.tiers.queues, CONTROL_QUEUE, WEBHOOK_QUEUE]
    app.conf.task_queues = [Queue(name, routing_key=name) for name in names]  # type: ignore[no-untyped-call]
    install_batched_task_events(app)
    return app
