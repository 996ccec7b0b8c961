"""The core of batchery: its data, its rules and its contracts, shared by the API and the workers.

Packages by concept, stacked bottom up in the order a job travels; a package imports only from the
packages beneath it, from ``config``, and from the shared vocabulary at this root (``errors``, ``status``,
``ids``, ``redaction``):

- ``storage``: engine, ORM models, sessions and the dialect object.
- ``tokens``: token counting, cost estimates, prices and the usage report.
- ``metrics``: the metric catalogue, the store and its buffering.
- ``tenancy``: API keys and scopes, quotas, fair share.
- ``leases``: claim, renew, check and expire, one helper for jobs, deliveries and batches.
- ``jobs``: request schemas, submission, the job repository, the attempt log, views.
- ``webhooks``: events (the outbox), deliveries, outbound URL safety.
- ``batches``: files, batch ingest, lifecycle and output.

Nothing here imports ``infra``, ``api``, ``workers``, ``cli`` or ``simulator``.
"""
