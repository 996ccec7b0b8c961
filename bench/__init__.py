"""Benchmarks: each module is a ``python -m bench.<name>`` command; ``bench/README.md`` keeps the figures.

May import: any product package and ``testbed``. Never ``tests``.
"""
