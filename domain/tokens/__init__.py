"""Tokens and costs: counting text and image tokens, estimating a request's cost before the call,
turning usage into dollars with the price table, and the usage report.

May import: ``config``, ``domain.storage`` and the root vocabulary.
"""
