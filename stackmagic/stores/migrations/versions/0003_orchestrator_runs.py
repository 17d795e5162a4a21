"""Runs remember their twin on a remote orchestrator: its run id and its page.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("runs") as runs:
        runs.add_column(sa.Column("orchestrator_run_id", sa.String(191)))
        runs.add_column(sa.Column("orchestrator_url", sa.Text))


def downgrade() -> None:
    with op.batch_alter_table("runs") as runs:
        runs.drop_column("orchestrator_url")
        runs.drop_column("orchestrator_run_id")
