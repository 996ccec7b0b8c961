"""The one hop from the API to the queue: send a job id, by task name, to its tier's queue.

The API never imports the workers' code; it only knows the task's name and the queue.
"""

from __future__ import annotations

import logging

from celery import Celery
from kombu.exceptions import OperationalError as KombuOperationalError
from redis.exceptions import RedisError

from config.celery_conf import RUN_JOB_TASK, celery_config
from config.settings import Settings

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

    def send(self, job_id: str, queue: str) -> bool:
        try:
            self._app.send_task(RUN_JOB_TASK, args=[job_id], queue=queue, retry=False)
        except (KombuOperationalError, RedisError, OSError) as exc:
            log.warning("could not send job %s to %s: %s", job_id, queue, type(exc).__name__)
            return False
        return True

    def close(self) -> None:
        self._app.close()
