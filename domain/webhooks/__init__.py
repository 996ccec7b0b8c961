"""Webhooks: the events a job or batch records (the outbox), their deliveries and attempts, and the
safety checks on an outbound URL (SSRF).

May import: everything in ``domain`` below it (``jobs`` and lower) and ``config``.
"""
