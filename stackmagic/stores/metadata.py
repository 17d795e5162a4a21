"""The metadata store: every run, step run, artifact, parameter and metric.

One class over SQLAlchemy 2, so the same code serves SQLite (the default, in
``.stackmagic/``) and database servers. Every change is one short transaction.
On SQLite, write transactions start with ``BEGIN IMMEDIATE`` and wait up to
``BUSY_TIMEOUT_SECONDS`` for another writer, and the file is in WAL mode, so
readers never block writers and two pipelines running at once lose nothing and
never see "database is locked". The schema is brought up to date by Alembic
migrations the first time a store is opened by a newer stackmagic.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import URL, Engine, create_engine, event, inspect, select, text
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Session, selectinload

from ..errors import StackmagicError
from .artifacts import ArtifactInfo
from .models import (
    SCHEMA_REVISION,
    Artifact,
    Metric,
    Pipeline,
    Run,
    RunParameter,
    RunStatus,
    StepArtifact,
    StepRun,
    StepStatus,
    utcnow,
)

BUSY_TIMEOUT_SECONDS = 60
INPUT, OUTPUT = "input", "output"
_WRITE = "stackmagic_write"


@dataclass(frozen=True)
class StoredArtifact:
    id: int
    info: ArtifactInfo


@dataclass(frozen=True)
class CacheHit:
    step_run_id: int
    run_id: str
    outputs: dict[str, StoredArtifact]


@dataclass
class StepRecord:
    name: str
    status: str
    started_at: datetime | None
    ended_at: datetime | None
    cache_key: str | None
    cached_from: str | None  # "RUN_ID/STEP" of the step run whose outputs were reused
    attempts: int
    error: str | None
    notebook_uri: str | None
    inputs: dict[str, ArtifactInfo] = field(default_factory=dict)
    outputs: dict[str, ArtifactInfo] = field(default_factory=dict)
    metrics: list[tuple[str, float]] = field(default_factory=list)

    @property
    def seconds(self) -> float | None:
        if self.started_at is None or self.ended_at is None:
            return None
        return (self.ended_at - self.started_at).total_seconds()


@dataclass
class RunRecord:
    id: str
    pipeline: str
    notebook: str
    status: str
    started_at: datetime
    ended_at: datetime | None
    stack_name: str
    stack: dict[str, Any]
    bundle_uri: str
    options: dict[str, Any]
    error: str | None
    parameters: dict[str, Any]
    overridden: list[str]
    steps: list[StepRecord] = field(default_factory=list)

    @property
    def seconds(self) -> float | None:
        return None if self.ended_at is None else (self.ended_at - self.started_at).total_seconds()

    def step(self, name: str) -> StepRecord:
        for step in self.steps:
            if step.name == name:
                return step
        raise StackmagicError(
            f"run {self.id} has no step {name!r} (steps: {', '.join(s.name for s in self.steps)})"
        )


class MetadataStore:
    def __init__(self, url: str | URL, *, label: str | None = None) -> None:
        """``label`` names the store in messages (a path, or a server without its password)."""
        self.engine = _create_engine(url)
        self.label = label or str(url)
        self._writer = self.engine.execution_options(**{_WRITE: True})
        try:
            self._migrate()
        except DBAPIError as error:
            self.engine.dispose()
            reason = str(error.orig).splitlines()[0] if error.orig else type(error).__name__
            raise StackmagicError(
                f"cannot open the metadata store {self.label} ({reason}); check its settings "
                "(`stackmagic metadata-store describe NAME`)"
            ) from None

    def close(self) -> None:
        self.engine.dispose()

    # -- sessions and schema ---------------------------------------------------------

    @contextmanager
    def _session(self, *, write: bool = False) -> Iterator[Session]:
        with Session(self._writer if write else self.engine, expire_on_commit=False) as session:
            with session.begin():
                yield session

    def _migrate(self) -> None:
        """Bring the schema up to date, once, even when several processes open a new store at once."""
        with self._writer.connect() as connection, connection.begin():
            revision = None
            if inspect(connection).has_table("alembic_version"):
                revision = connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
            if revision == SCHEMA_REVISION:
                return
            if revision is not None and revision > SCHEMA_REVISION:
                raise StackmagicError(
                    f"the metadata store {self.label} was written by a newer stackmagic "
                    f"(schema {revision}); upgrade stackmagic (`pip install -U stackmagic`)"
                )
            from alembic import command
            from alembic.config import Config

            config = Config()
            config.set_main_option("script_location", "stackmagic.stores:migrations")
            config.attributes["connection"] = connection
            command.upgrade(config, SCHEMA_REVISION)

    # -- writing a run -----------------------------------------------------------------

    def create_run(
        self,
        *,
        run_id: str,
        pipeline: str,
        notebook: str,
        stack_name: str,
        stack: Mapping[str, Any],
        bundle_uri: str,
        bundle_hash: str,
        options: Mapping[str, Any],
        parameters: Mapping[str, Any],
        overridden: Sequence[str],
        steps: Sequence[str],
    ) -> None:
        with self._session(write=True) as session:
            found = _pipeline_row(session, pipeline)
            run = Run(
                id=run_id, pipeline=found, notebook=notebook, status=RunStatus.RUNNING,
                stack_name=stack_name, stack=dict(stack), bundle_uri=bundle_uri,
                bundle_hash=bundle_hash, options=dict(options),
            )
            run.parameters = [
                RunParameter(name=name, value=value, overridden=name in overridden)
                for name, value in parameters.items()
            ]
            run.steps = [
                StepRun(name=name, position=position, status=StepStatus.PENDING, attempts=0)
                for position, name in enumerate(steps)
            ]
            session.add(run)

    def step_started(self, run_id: str, step: str, *, code_key: str, attempt: int) -> None:
        with self._session(write=True) as session:
            row = _step_row(session, run_id, step)
            row.status, row.started_at, row.code_key, row.attempts = (
                StepStatus.RUNNING, utcnow(), code_key, attempt,
            )

    def step_completed(
        self,
        run_id: str,
        step: str,
        *,
        code_key: str,
        cache_key: str,
        inputs: Mapping[str, StoredArtifact],
        outputs: Mapping[str, ArtifactInfo],
        metrics: Sequence[tuple[str, float]],
        notebook_uri: str,
    ) -> None:
        """Record a step that ran, its outputs, the inputs it read and its metrics."""
        with self._session(write=True) as session:
            row = _step_row(session, run_id, step)
            row.status, row.ended_at, row.error = StepStatus.COMPLETED, utcnow(), None
            row.code_key, row.cache_key, row.notebook_uri = code_key, cache_key, notebook_uri
            row.started_at = row.started_at or row.ended_at
            _link_inputs(row, inputs)
            _forget_results(row)
            for name, info in outputs.items():
                artifact = Artifact(
                    uri=info.uri, materializer=info.materializer, type_name=info.type_name[:300],
                    content_hash=info.content_hash, size=info.size,
                )
                row.artifacts.append(StepArtifact(direction=OUTPUT, name=name, artifact=artifact))
            row.metrics = [Metric(name=name[:200], value=value) for name, value in metrics]

    def step_cached(
        self,
        run_id: str,
        step: str,
        *,
        code_key: str,
        cache_key: str,
        hit: CacheHit,
        inputs: Mapping[str, StoredArtifact],
    ) -> None:
        """Record a step served from the cache: its outputs are the original run's artifacts."""
        with self._session(write=True) as session:
            row = _step_row(session, run_id, step)
            now = utcnow()
            row.status, row.started_at, row.ended_at = StepStatus.CACHED, now, now
            row.code_key, row.cache_key, row.cached_from_id = code_key, cache_key, hit.step_run_id
            _link_inputs(row, inputs)
            original = session.get(StepRun, hit.step_run_id)
            row.metrics = [Metric(name=m.name, value=m.value) for m in original.metrics] if original else []
            for name, artifact in hit.outputs.items():
                row.artifacts.append(StepArtifact(direction=OUTPUT, name=name, artifact_id=artifact.id))

    def step_failed(
        self, run_id: str, step: str, *, error: str, notebook_uri: str | None,
        inputs: Mapping[str, StoredArtifact],
    ) -> None:
        with self._session(write=True) as session:
            row = _step_row(session, run_id, step)
            row.status, row.ended_at, row.error, row.notebook_uri = (
                StepStatus.FAILED, utcnow(), error, notebook_uri,
            )
            row.started_at = row.started_at or row.ended_at
            _link_inputs(row, inputs)
            _forget_results(row)

    def steps_skipped(self, run_id: str, steps: Sequence[str], reason: str) -> None:
        if not steps:
            return
        with self._session(write=True) as session:
            for step in steps:
                row = _step_row(session, run_id, step)
                row.status, row.error = StepStatus.SKIPPED, reason

    def run_finished(self, run_id: str, *, error: str | None = None) -> None:
        with self._session(write=True) as session:
            run = session.get(Run, run_id)
            if run is None:
                raise StackmagicError(f"no run {run_id} in the metadata store {self.label}")
            run.status = RunStatus.FAILED if error else RunStatus.COMPLETED
            run.ended_at, run.error = utcnow(), error
            for row in run.steps:  # a run stopped early leaves no step looking busy
                if row.status in (StepStatus.PENDING, StepStatus.RUNNING):
                    row.status, row.error = StepStatus.SKIPPED, row.error or error

    # -- the cache -------------------------------------------------------------------------

    def has_code_key(self, code_key: str) -> bool:
        """Whether any step ever ran this code with these parameters (so a cache hit is possible)."""
        with self._session() as session:
            return session.scalar(
                select(StepRun.id).where(
                    StepRun.code_key == code_key, StepRun.status == StepStatus.COMPLETED
                ).limit(1)
            ) is not None

    def cache_hits(self, cache_key: str, *, other_than: str) -> Iterator[CacheHit]:
        """Completed step runs with this key in runs other than ``other_than``, newest first.

        The caller checks that their outputs still exist.
        """
        with self._session() as session:
            rows = session.scalars(
                select(StepRun)
                .where(StepRun.cache_key == cache_key, StepRun.status == StepStatus.COMPLETED,
                       StepRun.run_id != other_than)
                .order_by(StepRun.ended_at.desc())
                .limit(5)
                .options(selectinload(StepRun.artifacts).selectinload(StepArtifact.artifact))
            ).all()
            hits = [
                CacheHit(row.id, row.run_id, {
                    link.name: StoredArtifact(link.artifact.id, _info(link.artifact))
                    for link in row.artifacts if link.direction == OUTPUT
                })
                for row in rows
            ]
        yield from hits

    # -- reading ---------------------------------------------------------------------------

    def runs(self, *, pipeline: str | None = None, limit: int = 20) -> list[RunRecord]:
        with self._session() as session:
            query = select(Run).join(Run.pipeline).order_by(Run.started_at.desc()).limit(limit)
            if pipeline is not None:
                query = query.where(Pipeline.name == pipeline)
            query = query.options(selectinload(Run.steps), selectinload(Run.parameters))
            return [_run_record(run, with_artifacts=False) for run in session.scalars(query)]

    def run(self, run_id: str) -> RunRecord:
        """One run by its id or a unique beginning of it, ``latest`` for the newest."""
        with self._session() as session:
            if run_id == "latest":
                matches = session.scalars(select(Run.id).order_by(Run.started_at.desc()).limit(1)).all()
            else:
                escaped = run_id.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
                matches = session.scalars(
                    select(Run.id).where(Run.id.like(escaped + "%", escape="\\")).limit(2)
                ).all()
            if len(matches) != 1:
                problem = "matches several runs; give more of it" if matches else "names no run"
                raise StackmagicError(
                    f"{run_id!r} {problem} in the metadata store {self.label} "
                    "(`stackmagic pipeline runs` lists them)"
                )
            run = session.scalars(
                select(Run).where(Run.id == matches[0]).options(
                    selectinload(Run.parameters),
                    selectinload(Run.steps).selectinload(StepRun.artifacts).selectinload(
                        StepArtifact.artifact
                    ),
                    selectinload(Run.steps).selectinload(StepRun.metrics),
                    selectinload(Run.steps).selectinload(StepRun.cached_from),
                )
            ).one()
            return _run_record(run, with_artifacts=True)

    def step_outputs(self, run_id: str, step: str) -> dict[str, StoredArtifact]:
        """The outputs a step of a past run left (``run_id`` exact)."""
        with self._session() as session:
            row = _step_row(session, run_id, step)
            return {
                link.name: StoredArtifact(link.artifact_id, _info(link.artifact))
                for link in row.artifacts if link.direction == OUTPUT
            }


def _create_engine(url: str | URL) -> Engine:
    engine = create_engine(url, connect_args=_connect_args(url))
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_connect)
        event.listen(engine, "begin", _sqlite_begin)
    return engine


def _connect_args(url: str | URL) -> dict[str, Any]:
    name = (url if isinstance(url, str) else url.drivername).split(":", 1)[0]
    return {"timeout": BUSY_TIMEOUT_SECONDS} if name.startswith("sqlite") else {}


def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.isolation_level = None  # SQLAlchemy's "begin" event starts transactions
    cursor = dbapi_connection.cursor()
    if cursor.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
        _switch_to_wal(cursor)
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _switch_to_wal(cursor: Any) -> None:
    """Once per database file; the switch needs the file to itself, so it waits its turn."""
    import sqlite3

    deadline = time.monotonic() + BUSY_TIMEOUT_SECONDS
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _sqlite_begin(connection: Any) -> None:
    """Writers take the write lock up front: a deferred one could not wait for it, only fail."""
    write = connection.get_execution_options().get(_WRITE, False)
    connection.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


def _pipeline_row(session: Session, name: str) -> Pipeline:
    """The pipeline's row, made on its first run; two first runs at once make one."""
    query = select(Pipeline).where(Pipeline.name == name)
    found = session.scalar(query)
    if found is not None:
        return found
    try:
        with session.begin_nested():
            found = Pipeline(name=name)
            session.add(found)
        return found
    except IntegrityError:  # another process made it meanwhile
        return session.scalars(query).one()


def _step_row(session: Session, run_id: str, step: str) -> StepRun:
    row = session.scalar(select(StepRun).where(StepRun.run_id == run_id, StepRun.name == step))
    if row is None:
        raise StackmagicError(f"run {run_id} has no step {step!r} in the metadata store")
    return row


def _link_inputs(row: StepRun, inputs: Mapping[str, StoredArtifact]) -> None:
    known = {(link.direction, link.name) for link in row.artifacts}
    for name, artifact in inputs.items():
        if (INPUT, name) not in known:
            row.artifacts.append(StepArtifact(direction=INPUT, name=name, artifact_id=artifact.id))


def _forget_results(row: StepRun) -> None:
    """A step run again in the same run (a retried pod) replaces what it left before."""
    row.artifacts = [link for link in row.artifacts if link.direction == INPUT]
    row.metrics = []


def _info(artifact: Artifact) -> ArtifactInfo:
    return ArtifactInfo(
        uri=artifact.uri, materializer=artifact.materializer, content_hash=artifact.content_hash,
        size=artifact.size, type_name=artifact.type_name,
    )


def _run_record(run: Run, *, with_artifacts: bool) -> RunRecord:
    steps = []
    for row in run.steps:
        record = StepRecord(
            name=row.name, status=row.status, started_at=row.started_at, ended_at=row.ended_at,
            cache_key=row.cache_key,
            cached_from=(f"{row.cached_from.run_id}/{row.cached_from.name}"
                         if with_artifacts and row.cached_from is not None else None),
            attempts=row.attempts, error=row.error, notebook_uri=row.notebook_uri,
        )
        if with_artifacts:
            for link in row.artifacts:
                side = record.inputs if link.direction == INPUT else record.outputs
                side[link.name] = _info(link.artifact)
            record.metrics = [(metric.name, metric.value) for metric in row.metrics]
        steps.append(record)
    return RunRecord(
        id=run.id, pipeline=run.pipeline.name, notebook=run.notebook, status=run.status,
        started_at=run.started_at, ended_at=run.ended_at, stack_name=run.stack_name,
        stack=run.stack, bundle_uri=run.bundle_uri, options=run.options, error=run.error,
        parameters={p.name: p.value for p in run.parameters},
        overridden=[p.name for p in run.parameters if p.overridden],
        steps=steps,
    )
