"""The Celery configuration shared by the API (which only sends) and the workers (which run).

JSON only, ids only on the wire, late acks held in the worker's memory (the database is the ledger), and a
visibility timeout far above the longest job for when kombu's ack emulation is turned on.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from celery import Celery
from kombu.exceptions import BatchPublishError
from kombu.exceptions import OperationalError as KombuOperationalError
from redis.exceptions import RedisError

from config.settings import Settings

log = logging.getLogger(__name__)
BROKER_ERRORS = (KombuOperationalError, BatchPublishError, RedisError, OSError)

RUN_JOB_TASK = "batchery.run_job"
SWEEP_TASK = "batchery.sweep"
CONTROL_QUEUE = "batchery.control"
DELIVER_WEBHOOK_TASK = "batchery.deliver_webhook"
WEBHOOK_SWEEP_TASK = "batchery.webhook_sweep"
WEBHOOK_QUEUE = "batchery.webhooks"
INGEST_BATCH_TASK = "batchery.ingest_batch"
FINALIZE_BATCH_TASK = "batchery.finalize_batch"
BATCH_TICK_TASK = "batchery.batch_tick"
PROVIDER_BATCH_TICK_TASK = "batchery.provider_batch_tick"


def celery_config(settings: Settings) -> dict[str, Any]:
    """Keyword settings for ``Celery.conf.update``."""
    transport = {
        "visibility_timeout": settings.visibility_timeout_seconds,
        # without it, consuming a message costs no Redis command beyond the BRPOP (``docs/reliability.md``)
        "ack_emulation": settings.broker_ack_emulation,
        "socket_timeout": 10,
        "socket_connect_timeout": 5,
        "retry_on_timeout": True,
        "health_check_interval": 30,
    }
    return {
        "broker_url": settings.redis_url,
        "broker_transport": "infra.broker_transport:Transport",  # kombu's, with one client per channel
        "broker_transport_options": transport,
        "broker_connection_retry_on_startup": True,
        "broker_pool_limit": 64,
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "event_serializer": "json",
        "task_ignore_result": True,
        "result_backend": None,
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "task_acks_on_failure_or_timeout": True,
        "worker_prefetch_multiplier": 1,
        # no task-sent events: they would double the event traffic of every job for a state Flower shows
        # a moment later anyway (received), and the window of a tier queue is short
        "task_send_sent_event": False,
        "worker_send_task_events": True,
        "task_default_queue": CONTROL_QUEUE,
        "task_routes": {
            SWEEP_TASK: {"queue": CONTROL_QUEUE},
            WEBHOOK_SWEEP_TASK: {"queue": CONTROL_QUEUE},
            DELIVER_WEBHOOK_TASK: {"queue": WEBHOOK_QUEUE},
            INGEST_BATCH_TASK: {"queue": CONTROL_QUEUE},
            FINALIZE_BATCH_TASK: {"queue": CONTROL_QUEUE},
            BATCH_TICK_TASK: {"queue": CONTROL_QUEUE},
            PROVIDER_BATCH_TICK_TASK: {"queue": CONTROL_QUEUE},
        },
        "beat_schedule": {
            "sweep": {"task": SWEEP_TASK, "schedule": settings.sweep_interval_seconds},
            "webhooks": {"task": WEBHOOK_SWEEP_TASK, "schedule": settings.webhook_poll_interval_seconds},
            "batches": {"task": BATCH_TICK_TASK, "schedule": settings.sweep_interval_seconds},
            "provider_batches": {
                "task": PROVIDER_BATCH_TICK_TASK,
                "schedule": settings.provider_batch_poll_seconds,
            },
        },
        "task_create_missing_queues": True,
        "worker_hijack_root_logger": False,
        "worker_cancel_long_running_tasks_on_connection_loss": False,
    }


def task_label(job_id: str, kind: str, model: str) -> str:
    """How a ``run_job`` message shows its argument in Flower (the message's ``argsrepr``): the job id,
    which is the only argument, then the job's kind and model, so an operator reads what each task is
    without opening the job. The argument itself stays the id alone."""
    return f"{job_id!r}, kind={kind}, model={model}"


def send_by_name(app: Celery, task: str, object_id: str, queue: str, *, label: str | None = None) -> bool:
    """Send ``task`` by name with one id as its only argument (shown in Flower as ``label`` when given).
    It never raises: False means the broker did not take the message, and the caller leaves the id for
    its periodic recovery."""
    try:
        app.send_task(task, args=[object_id], argsrepr=label, queue=queue, retry=False)
    except BROKER_ERRORS as exc:
        log.warning("could not send %s for %s to %s: %s", task, object_id, queue, type(exc).__name__)
        return False
    return True


def send_many_by_name(
    app: Celery,
    task: str,
    items: Sequence[tuple[str, str]],
    labels: Mapping[str, str] | None = None,
) -> list[str]:
    """Send ``task`` by name once per ``(object_id, queue)``, over one connection and in one pipelined
    round trip (kombu's publish batch); ``labels`` gives an id's Flower label (``task_label``). Returns
    the ids the broker may not have: all of them when the batch failed, since a failed pipeline leaves
    delivery uncertain. The caller sends those again later; a message that did land is then delivered
    twice, which is harmless because every claim is fenced."""
    shown = labels or {}
    if not items:
        return []
    try:
        with app.producer_or_acquire() as producer, producer.batch(max_size=len(items)):
            for object_id, queue in items:
                app.send_task(
                    task,
                    args=[object_id],
                    # a label, or what Celery's saferepr would give, at a fraction of its cost
                    argsrepr=shown.get(object_id) or repr([object_id]),
                    queue=queue,
                    # a Redis queue is a list that the first push creates, and the workers declare theirs:
                    # declaring it again for each message costs more than the push itself
                    declare=[],
                    retry=False,
                    producer=producer,
                )
    except BROKER_ERRORS as exc:
        log.warning("could not send %d %s messages: %s", len(items), task, type(exc).__name__)
        return [object_id for object_id, _ in items]
    return []
