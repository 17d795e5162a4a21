"""Runs record when someone asked to cancel them, for the process driving them to read.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from stackmagic.stores.models import UTCDateTime

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("runs") as runs:
        runs.add_column(sa.Column("cancel_requested_at", UTCDateTime))


def downgrade() -> None:
    with op.batch_alter_table("runs") as runs:
        runs.drop_column("cancel_requested_at")
