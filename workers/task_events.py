"""Task events for Flower, published in batches a few times a second instead of after every task.

A worker sends three task events per job (received, started, succeeded or failed). Celery buffers them
and flushes the buffer on the next turn of its event loop, which at a few hundred jobs a second means
one broker publish, with its own serialisation and round trip, for almost every job. This consumer
step flushes on a short timer instead, ``FLUSH_INTERVAL_SECONDS``, so a publish carries many events;
a burst that fills ``BUFFER_LIMIT`` events still flushes at once. Flower sees the same events, at most
that interval later. The buffer is flushed when the step stops, so a shutdown drops none.
"""

from __future__ import annotations

from typing import Any

from celery import Celery, bootsteps

FLUSH_INTERVAL_SECONDS = 0.2
BUFFER_LIMIT = 500


class BatchedTaskEvents(bootsteps.StartStopStep):  # type: ignore[misc]
    """A consumer step: replaces "flush on the next loop turn" with a timer."""

    requires = ("celery.worker.consumer.events:Events",)

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        self._timer: Any = None
        super().__init__(parent, **kwargs)

    def start(self, parent: Any) -> None:
        dispatcher, hub = parent.event_dispatcher, parent.hub
        if dispatcher is None or hub is None or not dispatcher.enabled:
            return  # no event loop, or events off: Celery's own behaviour stands
        dispatcher.on_send_buffered = None  # the timer flushes; a full buffer still flushes itself
        dispatcher.buffer_limit = BUFFER_LIMIT
        # start() runs on the thread that runs the loop, the only one that may touch its timer
        self._timer = hub.call_repeatedly(FLUSH_INTERVAL_SECONDS, _flush, parent)

    def stop(self, parent: Any) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        _flush(parent)

    def shutdown(self, parent: Any) -> None:
        self.stop(parent)


def _flush(parent: Any) -> None:
    dispatcher = parent.event_dispatcher  # replaced when the consumer reconnects
    if dispatcher is not None:
        dispatcher.flush()


def install_batched_task_events(app: Celery) -> None:
    """Add the step to the app's worker consumers."""
    app.steps["consumer"].add(BatchedTaskEvents)
