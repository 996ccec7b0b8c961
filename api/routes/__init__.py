"""Routers, one module per resource.

May import: the rest of ``api``, ``config``, ``domain`` and ``infra``.
"""
