"""The one hop from the API to the queue: send a job id, by task name, to its tier's queue.

The API never imports the workers' code; it only knows the task's name and the queue.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

from celery import Celery

from config.settings import Settings
from infra.celery_conf import (
    CONTROL_QUEUE,
    DELIVER_WEBHOOK_TASK,
    RUN_JOB_TASK,
    WEBHOOK_QUEUE,
    celery_config,
    send_by_name,
    send_many_by_name,
)

log = logging.getLogger(__name__)


class Enqueuer:
    """Sends job ids to tier queues. Sending never raises: False means "the sweeper will resend"."""

    def __init__(self, settings: Settings) -> None:
        self._app = Celery("batchery-api", set_as_current=False)
        self._app.conf.update(celery_config(settings))
        self._app.conf.broker_transport_options = {
            **self._app.conf.broker_transport_options,
            "max_retries": 1,
            "interval_start": 0,
            "interval_step": 0.2,
            "interval_max": 0.2,
        }

    def send(self, job_id: str, queue: str, *, label: str | None = None) -> bool:
        """Send one job id; ``label`` is how Flower shows it (``infra.celery_conf.task_label``)."""
        return send_by_name(self._app, RUN_JOB_TASK, job_id, queue, label=label)

    def send_many(
        self, jobs: Sequence[tuple[str, str]], labels: Mapping[str, str] | None = None
    ) -> list[str]:
        """Send ``(job_id, queue)`` pairs in one round trip; returns the ids not sent (the caller puts
        them back in the backlog for the dispatcher)."""
        return send_many_by_name(self._app, RUN_JOB_TASK, jobs, labels)

    def send_webhook(self, delivery_id: str) -> bool:
        """Send a webhook delivery id to its own queue; False leaves it for the periodic poll."""
        return send_by_name(self._app, DELIVER_WEBHOOK_TASK, delivery_id, WEBHOOK_QUEUE)

    def send_control(self, task: str, object_id: str) -> bool:
        """Send a control task (batch ingest, finalize) by name with one id; False leaves it for the
        periodic tick."""
        return send_by_name(self._app, task, object_id, CONTROL_QUEUE)

    def close(self) -> None:
        self._app.close()
