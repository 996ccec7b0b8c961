"""The leased tables: where jobs, webhook deliveries and batch runs keep their leases."""

from __future__ import annotations

from typing import cast

from sqlalchemy import Table

from domain.leases.lease import LeasedTable
from domain.storage.models import Batch, Job, ProviderBatch, WebhookDelivery

_JOBS = cast(Table, Job.__table__)
_DELIVERIES = cast(Table, WebhookDelivery.__table__)
_BATCHES = cast(Table, Batch.__table__)
_PROVIDER_BATCHES = cast(Table, ProviderBatch.__table__)

JOB_LEASES = LeasedTable("jobs", _JOBS, _JOBS.c.lease_expires_at, _JOBS.c.lease_owner)
"""A running job: held by the claim's token until ``lease_expires_at``."""

DELIVERY_LEASES = LeasedTable("webhook_deliveries", _DELIVERIES, _DELIVERIES.c.lease_expires_at)
"""A webhook delivery's attempt in flight (its writes are fenced by the attempt number)."""

BATCH_LEASES = LeasedTable("batches", _BATCHES, _BATCHES.c.lease_expires_at)
"""A batch's ingest or finalization run (its writes are fenced by the batch's status)."""

PROVIDER_BATCH_LEASES = LeasedTable(
    "provider_batches", _PROVIDER_BATCHES, _PROVIDER_BATCHES.c.lease_expires_at
)
"""A run advancing a provider batch: upload, start, poll or settle (its writes are fenced by its state)."""

ALL = (JOB_LEASES, DELIVERY_LEASES, BATCH_LEASES, PROVIDER_BATCH_LEASES)
