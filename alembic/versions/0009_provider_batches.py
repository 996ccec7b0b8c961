"""Provider batches: the execution path, provider batch and deadline of each job, the execution mode of
each batch, and the ``provider_batches`` table (``domain.provider_batches``).

Revision ID: 0009
Revises: 0007
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0009"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

DEFERRED_PREDICATE = "status = 'running' AND execution_path = 'provider_batch' AND provider_batch_id IS NULL"


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("execution_path", sa.String(16), nullable=True))
        batch.add_column(sa.Column("provider_batch_id", sa.String(40), nullable=True))
        batch.add_column(sa.Column("deadline_at", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("batches") as batch:
        batch.add_column(sa.Column("execution", sa.String(16), nullable=True))
    op.create_index(
        "ix_jobs_deferred",
        "jobs",
        ["tier", "kind", "model", "id"],
        postgresql_where=sa.text(DEFERRED_PREDICATE),
        sqlite_where=sa.text(DEFERRED_PREDICATE),
    )
    op.create_index("ix_jobs_provider_batch", "jobs", ["provider_batch_id", "status"])
    op.create_table(
        "provider_batches",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("provider", sa.String(64), nullable=False),
        sa.Column("endpoint", sa.String(64), nullable=False),
        sa.Column("model", sa.String(128), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("filename", sa.String(255), nullable=False),
        sa.Column("request_count", sa.Integer(), nullable=False),
        sa.Column("bytes", sa.BigInteger(), nullable=False),
        sa.Column("input_file_id", sa.String(128), nullable=True),
        sa.Column("remote_id", sa.String(128), nullable=True),
        sa.Column("remote_status", sa.String(32), nullable=True),
        sa.Column("output_file_id", sa.String(128), nullable=True),
        sa.Column("error_file_id", sa.String(128), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("polls", sa.Integer(), nullable=False),
        sa.Column("next_poll_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("submitted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_provider_batches_due", "provider_batches", ["state", "next_poll_at"])


def downgrade() -> None:
    op.drop_index("ix_provider_batches_due", table_name="provider_batches")
    op.drop_table("provider_batches")
    op.drop_index("ix_jobs_provider_batch", table_name="jobs")
    op.drop_index("ix_jobs_deferred", table_name="jobs")
    with op.batch_alter_table("batches") as batch:
        batch.drop_column("execution")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("deadline_at")
        batch.drop_column("provider_batch_id")
        batch.drop_column("execution_path")
