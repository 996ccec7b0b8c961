"""Batches: OpenAI-format files, batch ingest (one job per JSONL line), the lifecycle from
``validating`` to ``completed``, and the output and error files.

May import: everything in ``domain`` below it (``webhooks``, ``jobs`` and lower) and ``config``.
"""
