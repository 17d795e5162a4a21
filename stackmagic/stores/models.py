"""The metadata store's tables, as SQLAlchemy 2 models.

Portable on purpose: SQLite, MySQL 5.6+/MariaDB and PostgreSQL. So strings
that are indexed have lengths of at most 191 characters (the longest MySQL 5.6
indexes in utf8mb4), JSON is kept as text (MySQL 5.6 has no JSON type) of up
to 16 MB, and times are UTC with microseconds. Changing a table means
adding a migration under ``migrations/versions``.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import (
    BigInteger,
    DateTime,
    Double,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

#: The newest migration; the store upgrades any older schema to it on open.
SCHEMA_REVISION = "0010"


class RunStatus:
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    #: its machine went away before the run ended (a spot or preemptible VM taken back)
    PREEMPTED = "preempted"
    #: stopped on request (``stackmagic pipeline cancel``)
    CANCELLED = "cancelled"


class StepStatus:
    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    CACHED = "cached"
    FAILED = "failed"
    SKIPPED = "skipped"
    #: it was running when its run was cancelled
    CANCELLED = "cancelled"
    #: The steps whose outputs exist: they can feed other steps and serve as a cache.
    WITH_OUTPUTS = (COMPLETED, CACHED)


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in, aware UTC datetimes out, whatever the database keeps.

    With microseconds everywhere: MySQL's plain DATETIME would round to seconds,
    and "newest first" would then be a guess.
    """

    impl = DateTime
    cache_ok = True

    def load_dialect_impl(self, dialect: Any) -> Any:
        if dialect.name in ("mysql", "mariadb"):
            from sqlalchemy.dialects.mysql import DATETIME

            return dialect.type_descriptor(DATETIME(fsp=6))
        return dialect.type_descriptor(DateTime())

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        return None if value is None else value.astimezone(timezone.utc).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        return None if value is None else value.replace(tzinfo=timezone.utc)


class LongText(TypeDecorator[str]):
    """Text without a practical limit: MySQL's TEXT stops at 64 kB, so there MEDIUMTEXT."""

    impl = Text
    cache_ok = True

    def load_dialect_impl(self, dialect: Any) -> Any:
        if dialect.name in ("mysql", "mariadb"):
            from sqlalchemy.dialects.mysql import MEDIUMTEXT

            return dialect.type_descriptor(MEDIUMTEXT())
        return dialect.type_descriptor(Text())


class JSONText(LongText):
    """JSON kept as text, readable by every database we support."""

    cache_ok = True  # SQLAlchemy asks each subclass: stateless, so statements using it are cached

    def process_bind_param(self, value: Any, dialect: Any) -> str | None:
        return None if value is None else json.dumps(value, sort_keys=True, default=str)

    def process_result_value(self, value: str | None, dialect: Any) -> Any:
        return None if value is None else json.loads(value)


class Base(DeclarativeBase):
    pass


class Pipeline(Base):
    __tablename__ = "pipelines"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(191), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    runs: Mapped[list[Run]] = relationship(back_populates="pipeline")


class Run(Base):
    __tablename__ = "runs"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    pipeline_id: Mapped[int] = mapped_column(ForeignKey("pipelines.id"))
    notebook: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(20))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    stack_name: Mapped[str] = mapped_column(String(100))
    #: Every component's flavor and options, secrets masked: what the run ran on.
    stack: Mapped[dict[str, Any]] = mapped_column(JSONText)
    bundle_uri: Mapped[str] = mapped_column(Text)
    bundle_hash: Mapped[str] = mapped_column(String(64))
    #: How the run was asked for: no_cache, only, from.
    options: Mapped[dict[str, Any]] = mapped_column(JSONText, default=dict)
    error: Mapped[str | None] = mapped_column(LongText)
    #: "HOST:PID" of the process driving the run, and its last sign of life: a run whose
    #: process is gone is shown as failed instead of running forever.
    runner: Mapped[str | None] = mapped_column(String(191))
    #: Where that PID means something (boot id, PID namespace) and the process's start time.
    runner_identity: Mapped[dict[str, Any] | None] = mapped_column(JSONText)
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: The run as a remote orchestrator knows it (a Kubeflow run id) and where to see it there.
    orchestrator_run_id: Mapped[str | None] = mapped_column(String(191))
    orchestrator_url: Mapped[str | None] = mapped_column(Text)
    #: When ``stackmagic gc`` deleted the run's artifacts and executed notebooks (those that
    #: runs it kept still use stay); the record itself stays, for its history.
    collected_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: When someone asked to cancel the run: the process driving it, wherever it is, reads this
    #: and stops its steps; whoever records the run's end then records it cancelled.
    cancel_requested_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: The schedule that started the run (its name), None for a run someone asked for.
    schedule: Mapped[str | None] = mapped_column(String(191))
    #: The run's twin in the stack's experiment tracker (an MLflow run id) and where to see it;
    #: ``tracker_note`` says why it is not (fully) mirrored there, when it is not.
    tracker_run_id: Mapped[str | None] = mapped_column(String(191))
    tracker_url: Mapped[str | None] = mapped_column(Text)
    tracker_note: Mapped[str | None] = mapped_column(Text)

    pipeline: Mapped[Pipeline] = relationship(back_populates="runs")
    parameters: Mapped[list[RunParameter]] = relationship(
        back_populates="run", cascade="all, delete-orphan", order_by="RunParameter.name"
    )
    steps: Mapped[list[StepRun]] = relationship(
        back_populates="run", cascade="all, delete-orphan", order_by="StepRun.position"
    )

    __table_args__ = (
        Index("ix_runs_pipeline_started", "pipeline_id", "started_at"),
        Index("ix_runs_started", "started_at"),
        Index("ix_runs_status", "status"),
        Index("ix_runs_schedule", "schedule"),
    )


class RunParameter(Base):
    __tablename__ = "run_parameters"

    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id"), primary_key=True)
    name: Mapped[str] = mapped_column(String(191), primary_key=True)
    value: Mapped[Any] = mapped_column(JSONText, nullable=True)  # a parameter may be None
    #: False where the value is the notebook's default, True where the run overrode it.
    overridden: Mapped[bool] = mapped_column(default=False)

    run: Mapped[Run] = relationship(back_populates="parameters")


class StepRun(Base):
    __tablename__ = "step_runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id"))
    name: Mapped[str] = mapped_column(String(100))
    #: The step's place in the pipeline's order, so listings follow the DAG.
    position: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(20))
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: Hash of the code, the parameters it reads and its settings; with the
    #: inputs' content hashes it makes the cache key.
    code_key: Mapped[str | None] = mapped_column(String(64), index=True)
    cache_key: Mapped[str | None] = mapped_column(String(64), index=True)
    cached_from_id: Mapped[int | None] = mapped_column(ForeignKey("step_runs.id"))
    #: What the cache key was made of, as hashes (see ``runtime.cache``): the next run of the
    #: step compares its own with them to say why it runs.
    parts: Mapped[dict[str, Any] | None] = mapped_column(JSONText)
    #: Why the step ran rather than came from the cache: "code changed (cell 7)", "first run".
    reason: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(LongText)
    notebook_uri: Mapped[str | None] = mapped_column(Text)
    #: A step run by a step operator: its job's id there, and the job's page in its console.
    job_id: Mapped[str | None] = mapped_column(Text)
    job_url: Mapped[str | None] = mapped_column(Text)

    run: Mapped[Run] = relationship(back_populates="steps")
    cached_from: Mapped[StepRun | None] = relationship(remote_side=[id])
    artifacts: Mapped[list[StepArtifact]] = relationship(
        back_populates="step_run", cascade="all, delete-orphan", order_by="StepArtifact.name"
    )
    metrics: Mapped[list[Metric]] = relationship(
        back_populates="step_run", cascade="all, delete-orphan", order_by="Metric.id"
    )

    __table_args__ = (UniqueConstraint("run_id", "name"),)


class Artifact(Base):
    __tablename__ = "artifacts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    uri: Mapped[str] = mapped_column(Text)
    materializer: Mapped[str] = mapped_column(String(50))
    type_name: Mapped[str] = mapped_column(String(300))
    content_hash: Mapped[str] = mapped_column(String(64), index=True)
    size: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class StepArtifact(Base):
    """An artifact a step run read (``input``) or wrote or reused (``output``), by name."""

    __tablename__ = "step_artifacts"

    step_run_id: Mapped[int] = mapped_column(ForeignKey("step_runs.id"), primary_key=True)
    direction: Mapped[str] = mapped_column(String(10), primary_key=True)
    name: Mapped[str] = mapped_column(String(191), primary_key=True)
    artifact_id: Mapped[int] = mapped_column(ForeignKey("artifacts.id"), index=True)

    step_run: Mapped[StepRun] = relationship(back_populates="artifacts")
    artifact: Mapped[Artifact] = relationship()


class Metric(Base):
    __tablename__ = "metrics"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    step_run_id: Mapped[int] = mapped_column(ForeignKey("step_runs.id"), index=True)
    name: Mapped[str] = mapped_column(String(191))
    value: Mapped[float] = mapped_column(Double)  # MySQL's FLOAT keeps 6 digits
    #: ``log_metric(..., step=N)``: where the value falls in a series (an epoch)
    step: Mapped[int | None] = mapped_column(Integer)
    logged_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    step_run: Mapped[StepRun] = relationship(back_populates="metrics")


class Schedule(Base):
    """A pipeline an orchestrator runs on a cron: what it runs, where, and its twin there."""

    __tablename__ = "schedules"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(191), unique=True)
    pipeline: Mapped[str] = mapped_column(String(191))
    notebook: Mapped[str] = mapped_column(Text)
    stack_name: Mapped[str] = mapped_column(String(100))
    #: The flavor of the stack's orchestrator when it was made: who to ask to unschedule.
    orchestrator: Mapped[str] = mapped_column(String(100))
    #: Five fields: minute hour day month weekday.
    cron: Mapped[str] = mapped_column(String(100))
    #: The values each scheduled run uses.
    parameters: Mapped[dict[str, Any]] = mapped_column(JSONText)
    #: The bundle the runs run, in the stack's artifact store: kept while the schedule lives.
    bundle_uri: Mapped[str] = mapped_column(Text)
    #: The schedule as the orchestrator knows it (a KFP recurring run id) and where to see it.
    orchestrator_id: Mapped[str] = mapped_column(Text)
    url: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
