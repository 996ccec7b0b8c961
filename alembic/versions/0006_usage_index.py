"""The index that usage reports read: a tenant's jobs by the time they finished.

Revision ID: 0006
Revises: 0001
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0006"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_jobs_tenant_finished", "jobs", ["tenant_id", "finished_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_jobs_tenant_finished", table_name="jobs")
