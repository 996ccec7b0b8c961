"""The ``batchery`` command.

May import: any product package (``config``, ``domain``, ``infra``, ``api``, ``workers``, ``simulator``),
which it starts or calls; nothing imports ``cli`` but ``testbed`` and ``bench``.
"""
