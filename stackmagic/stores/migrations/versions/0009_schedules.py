"""Schedules: pipelines an orchestrator runs on a cron, and the runs each one started.

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from stackmagic.stores.models import JSONText, UTCDateTime

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "schedules",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(191), nullable=False, unique=True),
        sa.Column("pipeline", sa.String(191), nullable=False),
        sa.Column("notebook", sa.Text, nullable=False),
        sa.Column("stack_name", sa.String(100), nullable=False),
        sa.Column("orchestrator", sa.String(100), nullable=False),
        sa.Column("cron", sa.String(100), nullable=False),
        sa.Column("parameters", JSONText, nullable=False),
        sa.Column("bundle_uri", sa.Text, nullable=False),
        sa.Column("orchestrator_id", sa.Text, nullable=False),
        sa.Column("url", sa.Text, nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
    )
    with op.batch_alter_table("runs") as runs:
        runs.add_column(sa.Column("schedule", sa.String(191)))
        runs.create_index("ix_runs_schedule", ["schedule"])


def downgrade() -> None:
    with op.batch_alter_table("runs") as runs:
        runs.drop_index("ix_runs_schedule")
        runs.drop_column("schedule")
    op.drop_table("schedules")
