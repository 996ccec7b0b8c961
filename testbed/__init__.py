"""The real processes and services that tests and benchmarks start: batchery's own commands as child
processes (stopped with their children), private Redis servers on free ports, fresh PostgreSQL
databases and private Redis logical databases.

Used by ``tests`` and ``bench``; imports nothing from either. A missing service is an error, never a skip.

May import: ``config``, ``domain``, ``infra`` and ``cli``.
"""
