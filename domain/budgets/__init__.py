"""Budgets: spending limits per tenant (and per API key) in USD and tokens, per UTC day and month.

``limits`` sets and reads them, ``pricing`` turns a job into the charge reserved before it runs,
``admission`` reserves charges atomically against every budget that applies, ``settlement`` settles
finished jobs and batches to their real cost, and ``status`` reports spend against each limit.

May import: ``config``, ``domain.storage``, ``domain.tokens``, ``domain.metrics`` and the root vocabulary.
"""
