"""Tenancy: API keys and their scopes, each tenant's queue quota, and fair share across tenants.

May import: ``config``, ``domain.storage``, ``domain.tokens``, ``domain.metrics`` and the root vocabulary.
"""
