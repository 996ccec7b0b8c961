"""The attempt log, and the partial indexes the dispatcher reads the backlog through.

Revision ID: 0005
Revises: 0001
Depends on: 0003 (the backlog index covers ``jobs.batch_id``)
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = "0003"

BACKLOG = "status = 'queued' AND dispatched_at IS NULL"
IN_FLIGHT = "status IN ('queued', 'running') AND dispatched_at IS NOT NULL"
RUNNING = "status = 'running'"


def _where(predicate: str) -> dict[str, sa.TextClause]:
    return {"postgresql_where": sa.text(predicate), "sqlite_where": sa.text(predicate)}


def upgrade() -> None:
    op.create_table(
        "job_attempts",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("job_id", sa.String(length=40), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("error_type", sa.String(length=64), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("wait_before_next_seconds", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("job_id", "number", name="uq_job_attempts_number"),
    )
    op.create_index(
        "ix_jobs_backlog",
        "jobs",
        ["tier", "tenant_id", "batch_id", sa.text("priority DESC"), "id"],
        **_where(BACKLOG),
    )
    op.create_index("ix_jobs_in_flight", "jobs", ["tier", "tenant_id"], **_where(IN_FLIGHT))
    op.create_index("ix_jobs_running_lease", "jobs", ["lease_expires_at"], **_where(RUNNING))


def downgrade() -> None:
    op.drop_index("ix_jobs_running_lease", table_name="jobs")
    op.drop_index("ix_jobs_in_flight", table_name="jobs")
    op.drop_index("ix_jobs_backlog", table_name="jobs")
    op.drop_table("job_attempts")
