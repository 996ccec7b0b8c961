"""The HTTP API (FastAPI): validates, stores and enqueues; reads jobs back.

May import: ``config``, ``domain`` and ``infra``. Never ``workers``: a task is sent by name.
"""
