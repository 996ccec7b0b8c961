"""One name for a lease's expiry: ``lease_expires_at`` on webhook deliveries (was ``locked_until``) and
on batches (was ``lease_until``), as on jobs. The lease helper (``domain.leases``) reads all three.

Revision ID: 0007
Revises: 0002, 0003
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0007"
down_revision: str | Sequence[str] | None = ("0002", "0003")
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

RENAMES = (("webhook_deliveries", "locked_until"), ("batches", "lease_until"))


def upgrade() -> None:
    for table, column in RENAMES:
        with op.batch_alter_table(table) as batch:
            batch.alter_column(column, new_column_name="lease_expires_at")


def downgrade() -> None:
    for table, column in RENAMES:
        with op.batch_alter_table(table) as batch:
            batch.alter_column("lease_expires_at", new_column_name=column)
