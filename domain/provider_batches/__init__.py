"""Provider batches: deferred jobs sent through the provider's own Batch API (``/v1/files`` and
``/v1/batches``) at its batch price, grouped, tracked in SQL from intent to settlement, and settled
into the jobs exactly as a live run ends them.

May import: everything in ``domain`` below it (``batches``, ``webhooks``, ``jobs`` and lower) and ``config``.
"""
