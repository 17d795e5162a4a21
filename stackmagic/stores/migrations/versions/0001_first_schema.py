"""The first schema: pipelines, runs and their parameters, step runs, artifacts, metrics.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from stackmagic.stores.models import JSONText, LongText, UTCDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "pipelines",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(191), nullable=False, unique=True),
        sa.Column("created_at", UTCDateTime, nullable=False),
    )
    op.create_table(
        "runs",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("pipeline_id", sa.Integer, sa.ForeignKey("pipelines.id"), nullable=False),
        sa.Column("notebook", sa.Text, nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("started_at", UTCDateTime, nullable=False),
        sa.Column("ended_at", UTCDateTime),
        sa.Column("stack_name", sa.String(100), nullable=False),
        sa.Column("stack", JSONText, nullable=False),
        sa.Column("bundle_uri", sa.Text, nullable=False),
        sa.Column("bundle_hash", sa.String(64), nullable=False),
        sa.Column("options", JSONText, nullable=False),
        sa.Column("error", LongText),
    )
    op.create_index("ix_runs_pipeline_started", "runs", ["pipeline_id", "started_at"])
    op.create_table(
        "run_parameters",
        sa.Column("run_id", sa.String(64), sa.ForeignKey("runs.id"), primary_key=True),
        sa.Column("name", sa.String(191), primary_key=True),
        sa.Column("value", JSONText),
        sa.Column("overridden", sa.Boolean, nullable=False),
    )
    op.create_table(
        "step_runs",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("run_id", sa.String(64), sa.ForeignKey("runs.id"), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("started_at", UTCDateTime),
        sa.Column("ended_at", UTCDateTime),
        sa.Column("code_key", sa.String(64)),
        sa.Column("cache_key", sa.String(64)),
        sa.Column("cached_from_id", sa.Integer, sa.ForeignKey("step_runs.id")),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("error", LongText),
        sa.Column("notebook_uri", sa.Text),
        sa.UniqueConstraint("run_id", "name"),
    )
    op.create_index("ix_step_runs_code_key", "step_runs", ["code_key"])
    op.create_index("ix_step_runs_cache_key", "step_runs", ["cache_key"])
    op.create_table(
        "artifacts",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("uri", sa.Text, nullable=False),
        sa.Column("materializer", sa.String(50), nullable=False),
        sa.Column("type_name", sa.String(300), nullable=False),
        sa.Column("content_hash", sa.String(64), nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
    )
    op.create_index("ix_artifacts_content_hash", "artifacts", ["content_hash"])
    op.create_table(
        "step_artifacts",
        sa.Column("step_run_id", sa.Integer, sa.ForeignKey("step_runs.id"), primary_key=True),
        sa.Column("direction", sa.String(10), primary_key=True),
        sa.Column("name", sa.String(191), primary_key=True),
        sa.Column("artifact_id", sa.Integer, sa.ForeignKey("artifacts.id"), nullable=False),
    )
    op.create_index("ix_step_artifacts_artifact_id", "step_artifacts", ["artifact_id"])
    op.create_table(
        "metrics",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("step_run_id", sa.Integer, sa.ForeignKey("step_runs.id"), nullable=False),
        sa.Column("name", sa.String(191), nullable=False),
        sa.Column("value", sa.Double, nullable=False),
        sa.Column("logged_at", UTCDateTime, nullable=False),
    )
    op.create_index("ix_metrics_step_run_id", "metrics", ["step_run_id"])


def downgrade() -> None:
    for table in (
        "metrics",
        "step_artifacts",
        "artifacts",
        "step_runs",
        "run_parameters",
        "runs",
        "pipelines",
    ):
        op.drop_table(table)
