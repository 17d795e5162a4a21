"""Runs record when ``stackmagic gc`` deleted their artifacts and executed notebooks.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from stackmagic.stores.models import UTCDateTime

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("runs") as runs:
        runs.add_column(sa.Column("collected_at", UTCDateTime))


def downgrade() -> None:
    with op.batch_alter_table("runs") as runs:
        runs.drop_column("collected_at")
