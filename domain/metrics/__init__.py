"""Metrics: the catalogue of families and labels, the shared store in the database, and the buffer
that batches its writes. The API's and the workers' collectors read from here.

May import: ``config``, ``domain.storage`` and the root vocabulary.
"""
