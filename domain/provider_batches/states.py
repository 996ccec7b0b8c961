"""Where a provider batch is, as batchery tracks it (pure)::

    pending ──upload──▶ uploaded ──create──▶ submitted ──(provider ends it)──▶ done
       │                                        │ (poll, with backoff; cancel when every job asked to)
       └──(every job ended before upload)───────┴─────────────────────────────────▶ done

- ``pending``: the intent: the row and the jobs it holds are written, in one transaction, before
  anything is uploaded. The file's name (``filename``) is derived from the row's id, so after a crash a
  resumed run finds a file it uploaded already in the provider's file list and does not upload twice.
- ``uploaded``: the provider holds the input file (``input_file_id``). The batch is created with the
  row's id in its metadata, so a crash before the id is stored is resumed by finding it in the list.
- ``submitted``: the provider runs it (``remote_id``, its status in ``remote_status``).
- ``done``: every job it held is settled: ended with its line's result or error, or handed back to
  live execution.

One run at a time advances a row: it holds the row's lease (``domain.leases``), renewed by its
process's heartbeat, so a dead worker's provider batch is resumed by another once the lease passes.
"""

from __future__ import annotations

from enum import StrEnum


class ProviderBatchState(StrEnum):
    """batchery's side of a provider batch."""

    pending = "pending"
    uploaded = "uploaded"
    submitted = "submitted"
    done = "done"


OPEN_STATES = (ProviderBatchState.pending, ProviderBatchState.uploaded, ProviderBatchState.submitted)
METADATA_KEY = "batchery_provider_batch"
"""The metadata key of a provider batch that names batchery's row."""


def file_name(provider_batch_id: str) -> str:
    """The name of a provider batch's input file: the row's id makes it findable after a crash."""
    return f"batchery-{provider_batch_id}.jsonl"
