"""Jobs: the request schemas, submission (validate, route, estimate, store), the job repository and
its dispatch queries, the attempt log and the views the API answers with.

May import: ``config``, ``domain.storage``, ``domain.tokens``, ``domain.metrics``, ``domain.tenancy``,
``domain.leases`` and the root vocabulary.
"""
