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

import contextlib
import os
import socket
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import (
    URL,
    Connection,
    Engine,
    create_engine,
    event,
    inspect,
    make_url,
    select,
    text,
    update,
)
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Session, selectinload

from ..background import repeating
from ..errors import NotFound, StackmagicError
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
#: How often a running pipeline's process says it is alive, and how long a silence means it died.
HEARTBEAT_SECONDS = 15
ABANDONED_AFTER_SECONDS = 8 * HEARTBEAT_SECONDS
_LOCK_NAME = "stackmagic_schema_upgrade"
_LOCK_KEY = 0x5354_4B4D_4147  # any fixed number: the advisory lock's name on PostgreSQL
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
    orchestrator_run_id: str | None = None
    orchestrator_url: str | None = None

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
    def __init__(
        self,
        url: str | URL,
        *,
        label: str | None = None,
        connect_args: Mapping[str, Any] | None = None,
    ) -> None:
        """``label`` names the store in messages (a path, or a server without its password)."""
        self.engine = _create_engine(url, connect_args or {})
        self.label = label or str(url)
        self._writer = self.engine.execution_options(**{_WRITE: True})
        try:
            self._migrate()
        except DBAPIError as error:
            self.engine.dispose()
            raise StackmagicError(
                f"cannot open the metadata store {self.label} ({_reason(error)}); "
                f"{_advice(error)}"
            ) from None

    def close(self) -> None:
        self.engine.dispose()

    # -- sessions and schema ---------------------------------------------------------

    @contextmanager
    def _session(self, *, write: bool = False) -> Iterator[Session]:
        try:
            with Session(self._writer if write else self.engine, expire_on_commit=False) as session:
                with session.begin():
                    yield session
        except DBAPIError as error:  # the server went away, a disk filled up...
            raise StackmagicError(
                f"the metadata store {self.label} failed ({_reason(error)}); {_advice(error)}"
            ) from None

    def _migrate(self) -> None:
        """Bring the schema up to date, once, even when several processes open a new store at once."""
        with self._writer.connect() as connection, connection.begin(), _migration_lock(connection):
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
        driven_here: bool = True,
        exist_ok: bool = False,
    ) -> None:
        """Record a new run, its parameters and its steps (all pending).

        ``driven_here=False``: no process of this machine drives the run (a
        cluster schedules its steps), so its liveness is not judged by ours.
        ``exist_ok``: steps on several machines may each be the first to record it.
        """
        if exist_ok and self._has_run(run_id):
            return
        try:
            self._add_run(
                run_id=run_id, pipeline=pipeline, notebook=notebook, stack_name=stack_name,
                stack=stack, bundle_uri=bundle_uri, bundle_hash=bundle_hash, options=options,
                parameters=parameters, overridden=overridden, steps=steps, driven_here=driven_here,
            )
        except StackmagicError:
            if exist_ok and self._has_run(run_id):  # recorded by another step meanwhile
                return
            raise

    def _has_run(self, run_id: str) -> bool:
        with self._session() as session:
            return session.scalar(select(Run.id).where(Run.id == run_id)) is not None

    def _add_run(
        self, *, run_id: str, pipeline: str, notebook: str, stack_name: str,
        stack: Mapping[str, Any], bundle_uri: str, bundle_hash: str, options: Mapping[str, Any],
        parameters: Mapping[str, Any], overridden: Sequence[str], steps: Sequence[str],
        driven_here: bool,
    ) -> None:
        with self._session(write=True) as session:
            found = _pipeline_row(session, pipeline)
            run = Run(
                id=run_id, pipeline=found, notebook=notebook, status=RunStatus.RUNNING,
                stack_name=stack_name, stack=dict(stack), bundle_uri=bundle_uri,
                bundle_hash=bundle_hash, options=dict(options),
                runner=this_runner() if driven_here else None,
                heartbeat_at=utcnow() if driven_here else None,
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

    @contextmanager
    def keeping_alive(self, run_id: str) -> Iterator[None]:
        """Beat the run's heartbeat while the block runs, so readers know its process lives."""

        def beat() -> None:
            with contextlib.suppress(StackmagicError):  # a missed beat is not a failure
                with self._session(write=True) as session:
                    session.execute(update(Run).where(Run.id == run_id).values(heartbeat_at=utcnow()))

        with repeating(HEARTBEAT_SECONDS, beat, f"heartbeat-{run_id}"):
            yield

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

    def step_retrying(self, run_id: str, step: str, *, error: str, notebook_uri: str | None) -> None:
        """A try failed and the orchestrator will start another: the step has not ended."""
        with self._session(write=True) as session:
            row = _step_row(session, run_id, step)
            row.status, row.error, row.notebook_uri = StepStatus.PENDING, error, notebook_uri

    def steps_skipped(self, run_id: str, steps: Sequence[str], reason: str) -> None:
        if not steps:
            return
        with self._session(write=True) as session:
            for step in steps:
                row = _step_row(session, run_id, step)
                row.status, row.error = StepStatus.SKIPPED, reason

    def run_submitted(self, run_id: str, *, orchestrator_run_id: str, url: str) -> None:
        """Link a run to its twin on a remote orchestrator."""
        with self._session(write=True) as session:
            session.execute(
                update(Run).where(Run.id == run_id)
                .values(orchestrator_run_id=orchestrator_run_id, orchestrator_url=url)
            )

    def settle_run(self, run_id: str) -> bool:
        """Finish a run whose steps have all ended; True if it is finished (now or before).

        Where each step records itself on its own machine, the last one to end
        finishes the run: failed if a step failed, else completed.
        """
        with self._session(write=True) as session:
            run = session.get(Run, run_id)
            if run is None:
                raise StackmagicError(f"no run {run_id} in the metadata store {self.label}")
            if run.status != RunStatus.RUNNING:
                return True
            if any(row.status in (StepStatus.PENDING, StepStatus.RUNNING) for row in run.steps):
                return False
            failed = [row for row in run.steps if row.status == StepStatus.FAILED]
            run.status = RunStatus.FAILED if failed else RunStatus.COMPLETED
            run.ended_at = utcnow()
            run.error = f"step {failed[0].name!r} failed: {failed[0].error}" if failed else None
            return True

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

    def run_lost(self, run_id: str, error: str) -> None:
        """The machine running the run went away: its busy steps failed, the rest never ran."""
        with self._session(write=True) as session:
            run = session.get(Run, run_id)
            if run is None or run.status != RunStatus.RUNNING:
                return
            run.status, run.ended_at, run.error = RunStatus.PREEMPTED, utcnow(), error
            for row in run.steps:
                if row.status == StepStatus.RUNNING:
                    row.status, row.ended_at, row.error = StepStatus.FAILED, run.ended_at, error
                elif row.status == StepStatus.PENDING:
                    row.status, row.error = StepStatus.SKIPPED, error

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
        self.fail_abandoned_runs()
        with self._session() as session:
            query = select(Run).join(Run.pipeline).order_by(Run.started_at.desc()).limit(limit)
            if pipeline is not None:
                query = query.where(Pipeline.name == pipeline)
            query = query.options(selectinload(Run.steps), selectinload(Run.parameters))
            return [_run_record(run, with_artifacts=False) for run in session.scalars(query)]

    def run(self, run_id: str) -> RunRecord:
        """One run by its id or a unique beginning of it, ``latest`` for the newest."""
        self.fail_abandoned_runs()
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
                raise (StackmagicError if matches else NotFound)(
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

    def fail_abandoned_runs(self) -> list[str]:
        """Mark as failed the runs whose process died (killed, or its machine lost) mid-run.

        A process on this machine that no longer exists is gone at once; one
        elsewhere, when its heartbeat has been silent for ``ABANDONED_AFTER_SECONDS``.
        """
        with self._session() as session:
            running = session.execute(
                select(Run.id, Run.runner, Run.heartbeat_at).where(Run.status == RunStatus.RUNNING)
            ).all()
        now = utcnow()
        failed = []
        for run_id, runner, heartbeat in running:
            if not _abandoned(runner, heartbeat, now):
                continue
            with self._session(write=True) as session:
                run = session.get(Run, run_id, with_for_update=True)
                if run is None or run.status != RunStatus.RUNNING:  # it finished meanwhile
                    continue
                error = f"abandoned: the process running it ({runner}) stopped before the run ended"
                run.status, run.error = RunStatus.FAILED, error
                run.ended_at = heartbeat or now
                for row in run.steps:
                    if row.status == StepStatus.RUNNING:
                        row.status, row.error, row.ended_at = StepStatus.FAILED, error, run.ended_at
                    elif row.status == StepStatus.PENDING:
                        row.status, row.error = StepStatus.SKIPPED, error
            failed.append(run_id)
        return failed

    def step_outputs(self, run_id: str, step: str) -> dict[str, StoredArtifact]:
        """The outputs a step of a past run left (``run_id`` exact)."""
        with self._session() as session:
            row = _step_row(session, run_id, step)
            return {
                link.name: StoredArtifact(link.artifact_id, _info(link.artifact))
                for link in row.artifacts if link.direction == OUTPUT
            }


def this_runner() -> str:
    """How a run names the process driving it."""
    return f"{socket.gethostname()}:{os.getpid()}"


def _abandoned(runner: str | None, heartbeat: datetime | None, now: datetime) -> bool:
    if runner is None:  # driven from elsewhere (a cluster's own scheduler): not ours to judge
        return False
    host, _, pid = runner.rpartition(":")
    if host == socket.gethostname() and pid.isdigit():
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return True
        except PermissionError:  # alive, another user's
            return False
        return heartbeat is not None and (now - heartbeat).total_seconds() > ABANDONED_AFTER_SECONDS
    return heartbeat is None or (now - heartbeat).total_seconds() > ABANDONED_AFTER_SECONDS


def _create_engine(url: str | URL, connect_args: Mapping[str, Any]) -> Engine:
    backend = make_url(url).get_backend_name()
    if backend == "sqlite":
        engine = create_engine(url, connect_args={"timeout": BUSY_TIMEOUT_SECONDS, **connect_args})
        event.listen(engine, "connect", _sqlite_connect)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    engine = create_engine(
        url,
        connect_args=dict(connect_args),
        # each transaction sees what others committed before it: a pipeline row another
        # process just made is found, not hidden by MySQL's repeatable-read snapshot
        isolation_level="READ COMMITTED",
        pool_pre_ping=True,  # a kernel's connection may have idled past the server's timeout
        pool_recycle=3600,
    )
    if backend == "mysql":
        event.listen(engine, "connect", _lift_read_timeout)
    return engine


def _lift_read_timeout(dbapi_connection: Any, _record: Any) -> None:
    """PyMySQL's read timeout bounds the handshake; after it, queries may take their time."""
    if hasattr(dbapi_connection, "_read_timeout"):
        dbapi_connection._read_timeout = None


@contextmanager
def _migration_lock(connection: Connection) -> Iterator[None]:
    """Serialise schema upgrades across processes on a database server.

    SQLite's ``BEGIN IMMEDIATE`` already does; MySQL's DDL commits as it goes,
    so there a named lock is held for the session instead.
    """
    backend = connection.dialect.name
    if backend == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCK_KEY})
    elif backend in ("mysql", "mariadb"):
        got = connection.execute(
            text("SELECT GET_LOCK(:name, :wait)"), {"name": _LOCK_NAME, "wait": BUSY_TIMEOUT_SECONDS}
        ).scalar()
        if got != 1:
            raise StackmagicError(
                f"another process has been upgrading the metadata store for {BUSY_TIMEOUT_SECONDS} s; "
                "try again when it is done"
            )
        try:
            yield
        finally:
            connection.execute(text("SELECT RELEASE_LOCK(:name)"), {"name": _LOCK_NAME})
        return
    yield


def _reason(error: DBAPIError) -> str:
    """The driver's own words, without codes, SQL or the server's address twice."""
    original = error.orig
    if original is None:
        return type(error).__name__
    args = getattr(original, "args", ())
    if len(args) == 2 and isinstance(args[0], int):  # PyMySQL: (code, message)
        return str(args[1]).splitlines()[0]
    lines = [line.strip() for line in str(original).splitlines() if line.strip()]
    return lines[0] if lines else type(original).__name__


def _advice(error: DBAPIError) -> str:
    """What a user can do about the commonest failures."""
    said = str(error.orig).lower()
    for words, advice in _ADVICE:
        if any(word in said for word in words):
            return advice
    return "check its settings (`stackmagic metadata-store describe NAME`)"


_ADVICE = (
    (("' to database '",),  # MySQL says this alike of a missing database and a forbidden one
     "create that database on the server, or fix --database, or grant the user its use"),
    (("access denied for user", "password authentication failed", "no password supplied"),
     "check --username and --password (`stackmagic metadata-store update NAME --password=-`)"),
    (("unknown database", "does not exist"),
     "create that database on the server, or fix --database"),
    (("command denied", "permission denied", "access denied"),
     "grant the user CREATE, ALTER, INDEX, SELECT, INSERT, UPDATE and DELETE on that database"),
    (("can't connect", "connection refused", "timed out", "timeout expired",
      "name or service not known", "could not translate host name", "nodename nor servname"),
     "check that the server is running and reachable at --host and --port"),
)


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
        steps=steps, orchestrator_run_id=run.orchestrator_run_id,
        orchestrator_url=run.orchestrator_url,
    )
