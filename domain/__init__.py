"""The core of batchery: its data, its rules and its contracts, shared by the API and the workers.

Packages by concept, stacked bottom up in the order a job travels; a package imports only from the
packages beneath it, from ``config``, and from the shared vocabulary at this root (``errors``, ``status``,
``ids``, ``redaction``):

- ``storage``: engine, ORM models, sessions, the dialect object and the Redis key names.
- ``tokens``: token counting, cost estimates, prices and the usage report.
- ``metrics``: the metric catalogue, the store and its buffering.
- ``tenancy``: API keys and scopes, quotas, fair share.
- ``budgets``: spending limits per tenant and key, reserved before a job and settled after it.
- ``leases``: claim, renew, check and expire, one helper for jobs, deliveries and batches.
- ``jobs``: request schemas, submission, the job repository, the attempt log, views.
- ``webhooks``: events (the outbox), deliveries, outbound URL safety.
- ``batches``: files, batch ingest, lifecycle and output.
- ``provider_batches``: deferred jobs sent through the provider's own Batch API, and their settlement.

May import, from outside ``domain``: ``config`` only. Nothing here imports ``infra``, ``api``, ``workers``,
``cli`` or ``simulator``.
"""
