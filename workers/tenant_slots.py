"""A per-tenant cap on work in flight in one process, so one tenant cannot hold every thread.

``TenantSlots(limit)``: ``take(tenant)`` answers False when ``tenant`` already has ``limit`` pieces of
work running here (the caller leaves the work for later), else counts one more until ``give(tenant)``.
"""

from __future__ import annotations

import threading


class TenantSlots:
    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("a tenant needs at least one slot")
        self.limit = limit
        self._lock = threading.Lock()
        self._busy: dict[str, int] = {}

    def take(self, tenant: str) -> bool:
        with self._lock:
            busy = self._busy.get(tenant, 0)
            if busy >= self.limit:
                return False
            self._busy[tenant] = busy + 1
            return True

    def give(self, tenant: str) -> None:
        with self._lock:
            busy = self._busy.get(tenant, 0) - 1
            if busy > 0:
                self._busy[tenant] = busy
            else:
                self._busy.pop(tenant, None)

    def busy(self, tenant: str) -> int:
        with self._lock:
            return self._busy.get(tenant, 0)
