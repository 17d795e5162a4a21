"""Step runs keep what their cache key was made of, and why they ran instead of being cached.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from stackmagic.stores.models import JSONText

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("step_runs") as step_runs:
        step_runs.add_column(sa.Column("parts", JSONText))
        step_runs.add_column(sa.Column("reason", sa.Text))


def downgrade() -> None:
    with op.batch_alter_table("step_runs") as step_runs:
        step_runs.drop_column("reason")
        step_runs.drop_column("parts")
