"""Sending many job ids to a tier queue at once: Celery messages written straight to Redis, one
pipeline round trip per ``PIPELINE`` messages.

``send_task`` builds and sends one message per call, about half a millisecond each, which is too slow
to fan out a 50,000-request batch. These messages are the ones ``send_task(RUN_JOB_TASK, args=[id],
queue=queue)`` would produce (Celery's task message protocol 2 in kombu's Redis envelope: a JSON
object whose base64 ``body`` is ``[args, kwargs, embed]``), pushed with ``LPUSH`` onto the queue's
list, which workers pop from the other end in order. ``tests/integration`` checks them against
``send_task``'s own output and runs them through a real worker.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import uuid
from collections.abc import Sequence
from typing import Any

import redis

from config.celery_conf import RUN_JOB_TASK

PIPELINE = 1000
_EMBED = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}


def run_job_message(job_id: str, queue: str, *, origin: str | None = None) -> str:
    """The broker message that runs ``job_id`` on ``queue``, as the JSON text Redis stores."""
    task_id = str(uuid.uuid4())
    body = json.dumps([[job_id], {}, _EMBED], separators=(", ", ": "))
    headers: dict[str, Any] = {
        "lang": "py",
        "task": RUN_JOB_TASK,
        "id": task_id,
        "shadow": None,
        "eta": None,
        "expires": None,
        "group": None,
        "group_index": None,
        "retries": 0,
        "timelimit": [None, None],
        "root_id": task_id,
        "parent_id": None,
        "argsrepr": repr([job_id]),
        "kwargsrepr": "{}",
        "origin": origin or f"gen{os.getpid()}@{socket.gethostname()}",
        "ignore_result": None,
        "replaced_task_nesting": 0,
        "stamped_headers": None,
        "stamps": {},
    }
    envelope = {
        "body": base64.b64encode(body.encode()).decode(),
        "content-encoding": "utf-8",
        "content-type": "application/json",
        "headers": headers,
        "properties": {
            "correlation_id": task_id,
            "reply_to": "",
            "delivery_mode": 2,
            "delivery_info": {"exchange": "", "routing_key": queue},
            "priority": 0,
            "body_encoding": "base64",
            "delivery_tag": str(uuid.uuid4()),
        },
    }
    return json.dumps(envelope)


def push_run_jobs(
    client: redis.Redis[Any], queue: str, job_ids: Sequence[str], *, pipeline: int = PIPELINE
) -> list[str]:
    """Send ``job_ids`` to ``queue`` in order; returns the ids that could not be sent (from the first
    pipeline that failed on), so the caller can leave them for the sweeper."""
    origin = f"gen{os.getpid()}@{socket.gethostname()}"
    for start in range(0, len(job_ids), pipeline):
        part = job_ids[start : start + pipeline]
        try:
            client.lpush(queue, *[run_job_message(job_id, queue, origin=origin) for job_id in part])
        except (redis.RedisError, OSError):
            return list(job_ids[start:])
    return []
