"""An OpenAI-compatible upstream for batchery's tests, benchmarks and offline quick start.

It answers ``/v1/chat/completions``, ``/v1/embeddings``, ``/v1/images/generations`` and ``/v1/responses``
with the real response shapes and deterministic token usage, enforces quantized per-model rate limits
read from a tiers file, and injects latency and faults on demand. ``simulator.server`` is the entry point;
``python -m simulator --help`` lists the flags.

May import: ``config`` only (to read a tiers file). Never ``domain``, ``infra``, ``api`` or ``workers``: it
shares no code with the product it answers, so the two can disagree.
"""
