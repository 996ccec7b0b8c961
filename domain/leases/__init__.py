"""Leases: which worker holds a row, and until when.

A job, a webhook delivery and a batch's ingest or finalization run are each held by one process at a
time through a lease: an expiry time on the row (and, for jobs, the holder's token). The lease is
short, and a heartbeat renews every lease a live process holds, in one statement per table and round
(``workers.heartbeat``). A holder that dies stops renewing; its lease passes within one lease period
and the row can be taken again (the dispatcher re-queues jobs, the sweeps pick up deliveries and
batches).

- ``domain.leases.lease``: claim, renew, check and expire, written once over a ``LeasedTable`` (which
  columns hold a table's lease), and the defaults;
- ``domain.leases.keeper``: the set of leases a process holds, which its heartbeat renews.

May import ``domain.storage`` only.
"""
