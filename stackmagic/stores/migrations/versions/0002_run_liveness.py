"""Runs know who drives them: the runner process and its heartbeat; runs listed fast by time.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from stackmagic.stores.models import UTCDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("runs") as runs:
        runs.add_column(sa.Column("runner", sa.String(191)))
        runs.add_column(sa.Column("heartbeat_at", UTCDateTime))
    op.create_index("ix_runs_started", "runs", ["started_at"])
    op.create_index("ix_runs_status", "runs", ["status"])


def downgrade() -> None:
    op.drop_index("ix_runs_status", "runs")
    op.drop_index("ix_runs_started", "runs")
    with op.batch_alter_table("runs") as runs:
        runs.drop_column("heartbeat_at")
        runs.drop_column("runner")
