"""The ``batchery`` command."""
