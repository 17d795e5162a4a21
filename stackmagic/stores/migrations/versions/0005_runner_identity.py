"""Runs record where their runner's PID means something: boot id, PID namespace, start time.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from stackmagic.stores.models import JSONText

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("runs") as runs:
        runs.add_column(sa.Column("runner_identity", JSONText))


def downgrade() -> None:
    with op.batch_alter_table("runs") as runs:
        runs.drop_column("runner_identity")
