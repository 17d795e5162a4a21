"""A step run by a step operator keeps its job's id and console link.

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("step_runs") as step_runs:
        step_runs.add_column(sa.Column("job_id", sa.Text))
        step_runs.add_column(sa.Column("job_url", sa.Text))


def downgrade() -> None:
    with op.batch_alter_table("step_runs") as step_runs:
        step_runs.drop_column("job_url")
        step_runs.drop_column("job_id")
