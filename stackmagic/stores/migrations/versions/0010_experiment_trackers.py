"""A run keeps its twin in the experiment tracker; a metric keeps the step it was logged at.

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("runs") as runs:
        runs.add_column(sa.Column("tracker_run_id", sa.String(191)))
        runs.add_column(sa.Column("tracker_url", sa.Text))
        runs.add_column(sa.Column("tracker_note", sa.Text))
    with op.batch_alter_table("metrics") as metrics:
        metrics.add_column(sa.Column("step", sa.Integer))


def downgrade() -> None:
    with op.batch_alter_table("metrics") as metrics:
        metrics.drop_column("step")
    with op.batch_alter_table("runs") as runs:
        runs.drop_column("tracker_note")
        runs.drop_column("tracker_url")
        runs.drop_column("tracker_run_id")
