"""Runs: recording them, their liveness and how they end, and reading them back."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload

from ...background import repeating
from ...errors import NotFound, StackmagicError
from ...trackers.base import TrackedRun
from ..models import (
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
from .cancelling import mark_cancelled
from .connection import StoreConnection
from .liveness import HEARTBEAT_SECONDS, Runner, this_runner, why_abandoned
from .records import RunRecord, run_record

#: Runs whose metrics one query reads: within every database's limit on parameters.
_BATCH = 500


class RunRecords(StoreConnection):
    """Runs: made pending, kept alive, finished; listed and read."""

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
        schedule: str | None = None,
    ) -> None:
        """Record a new run, its parameters and its steps (all pending).

        ``driven_here=False``: no process of this machine drives the run (a
        cluster schedules its steps), so its liveness is not judged by ours.
        ``exist_ok``: steps on several machines may each be the first to record it.
        ``schedule``: the name of the schedule that started the run.
        """
        if exist_ok and self._has_run(run_id):
            return
        try:
            self._add_run(
                run_id=run_id,
                pipeline=pipeline,
                notebook=notebook,
                stack_name=stack_name,
                stack=stack,
                bundle_uri=bundle_uri,
                bundle_hash=bundle_hash,
                options=options,
                parameters=parameters,
                overridden=overridden,
                steps=steps,
                driven_here=driven_here,
                schedule=schedule,
            )
        except StackmagicError:
            if exist_ok and self._has_run(run_id):  # recorded by another step meanwhile
                return
            raise
        self._mirror_run_created(run_id)

    def _has_run(self, run_id: str) -> bool:
        with self._session() as session:
            return session.scalar(select(Run.id).where(Run.id == run_id)) is not None

    def _add_run(
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
        driven_here: bool,
        schedule: str | None,
    ) -> None:
        runner, now = (this_runner() if driven_here else None), utcnow()
        with self._session(write=True) as session:
            found = _pipeline_row(session, pipeline)
            run = Run(
                id=run_id,
                pipeline=found,
                notebook=notebook,
                status=RunStatus.RUNNING,
                started_at=now,
                stack_name=stack_name,
                stack=dict(stack),
                bundle_uri=bundle_uri,
                bundle_hash=bundle_hash,
                options=dict(options),
                runner=runner.label if runner else None,
                runner_identity=runner.identity() if runner else None,
                heartbeat_at=now if runner else None,
                schedule=schedule,
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
                    session.execute(
                        update(Run).where(Run.id == run_id).values(heartbeat_at=utcnow())
                    )

        with repeating(HEARTBEAT_SECONDS, beat, f"heartbeat-{run_id}"):
            yield

    def run_submitted(self, run_id: str, *, orchestrator_run_id: str, url: str) -> None:
        """Link a run to its twin on a remote orchestrator."""
        with self._session(write=True) as session:
            session.execute(
                update(Run)
                .where(Run.id == run_id)
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
        self._mirror_run_ended(run_id)
        return True

    def run_finished(self, run_id: str, *, error: str | None = None) -> None:
        if self._finish(run_id, error):
            self._mirror_run_ended(run_id)

    def _finish(self, run_id: str, error: str | None) -> bool:
        """Record the run's end; False if it had ended already (cancelled)."""
        with self._session(write=True) as session:
            run = session.get(Run, run_id)
            if run is None:
                raise StackmagicError(f"no run {run_id} in the metadata store {self.label}")
            if run.status == RunStatus.CANCELLED:  # as the process that stopped it recorded
                return False
            if error and run.cancel_requested_at is not None:  # it broke off: it was asked to
                mark_cancelled(run)
                return True
            run.status = RunStatus.FAILED if error else RunStatus.COMPLETED
            run.ended_at, run.error = utcnow(), error
            for row in run.steps:  # a run stopped early leaves no step looking busy
                if row.status == StepStatus.RUNNING and error:  # it broke off: it did not finish
                    row.status, row.ended_at = StepStatus.FAILED, run.ended_at
                    row.error = row.error or error
                elif row.status in (StepStatus.PENDING, StepStatus.RUNNING):
                    row.status, row.error = StepStatus.SKIPPED, row.error or error
        return True

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
        self._mirror_run_ended(run_id)

    def claim_tracker_run(self, run_id: str, tracker_run_id: str, url: str) -> TrackedRun:
        """Link the run to its twin in the experiment tracker, unless another process did
        first; returns the twin it is linked to."""
        with self._session(write=True) as session:
            session.execute(
                update(Run)
                .where(Run.id == run_id, Run.tracker_run_id.is_(None))
                .values(tracker_run_id=tracker_run_id, tracker_url=url)
            )
            run = session.get(Run, run_id, populate_existing=True)
            if run is None:
                raise StackmagicError(f"no run {run_id} in the metadata store {self.label}")
            return TrackedRun(run.tracker_run_id or tracker_run_id, run.tracker_url or url)

    def run_not_mirrored(self, run_id: str, note: str | None) -> None:
        """Say why the run is not (fully) in the experiment tracker; None: it is now."""
        with self._session(write=True) as session:
            session.execute(update(Run).where(Run.id == run_id).values(tracker_note=note))

    def runs(
        self, *, pipeline: str | None = None, status: str | None = None, limit: int | None = 20
    ) -> list[RunRecord]:
        """The newest runs (``limit=None``: all), each step with its metrics but not its artifacts.

        The sidebar polls this every few seconds: the metrics of all the runs listed come in
        one query (per 500 runs), whatever the number of runs.
        """
        self.fail_abandoned_runs()
        with self._session() as session:
            query = select(Run).join(Run.pipeline).order_by(Run.started_at.desc())
            if limit is not None:
                query = query.limit(limit)
            if pipeline is not None:
                query = query.where(Pipeline.name == pipeline)
            if status is not None:
                query = query.where(Run.status == status)
            query = query.options(selectinload(Run.steps), selectinload(Run.parameters))
            records = [run_record(run, with_artifacts=False) for run in session.scalars(query)]
            _add_metrics(session, records)
            return records

    def run(self, run_id: str) -> RunRecord:
        """One run by its id or a unique beginning of it, ``latest`` for the newest."""
        self.fail_abandoned_runs()
        with self._session() as session:
            if run_id == "latest":
                matches = session.scalars(
                    select(Run.id).order_by(Run.started_at.desc()).limit(1)
                ).all()
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
                select(Run)
                .where(Run.id == matches[0])
                .options(
                    selectinload(Run.parameters),
                    selectinload(Run.steps)
                    .selectinload(StepRun.artifacts)
                    .selectinload(StepArtifact.artifact),
                    selectinload(Run.steps).selectinload(StepRun.metrics),
                    selectinload(Run.steps).selectinload(StepRun.cached_from),
                )
            ).one()
            return run_record(run, with_artifacts=True)

    def fail_abandoned_runs(self) -> list[str]:
        """Mark as failed the runs whose process died (killed, or its machine lost) mid-run.

        See ``liveness`` for how a process is judged gone. A run driven from
        elsewhere (a cluster's own scheduler) has no runner: not ours to judge.
        An abandoned run ended, as far as anyone knows, at its last heartbeat.
        """
        with self._session() as session:
            running = session.execute(
                select(Run.id, Run.runner, Run.runner_identity, Run.heartbeat_at).where(
                    Run.status == RunStatus.RUNNING, Run.runner.is_not(None)
                )
            ).all()
        now = utcnow()
        failed = []
        for run_id, label, identity, heartbeat in running:
            why = why_abandoned(Runner.recorded(label, identity), heartbeat, now)
            if why is None:
                continue
            with self._session(write=True) as session:
                run = session.get(Run, run_id, with_for_update=True)
                if run is None or run.status != RunStatus.RUNNING:  # it finished meanwhile
                    continue
                error = f"abandoned: the process running it ({label}) {why}"
                run.status, run.error = RunStatus.FAILED, error
                run.ended_at = max(heartbeat or now, run.started_at)  # clocks of two machines
                for row in run.steps:
                    if row.status == StepStatus.RUNNING:
                        row.status, row.error = StepStatus.FAILED, error
                        row.ended_at = max(run.ended_at, row.started_at or run.ended_at)
                    elif row.status == StepStatus.PENDING:
                        row.status, row.error = StepStatus.SKIPPED, error
            failed.append(run_id)
            self._mirror_run_ended(run_id)  # its twin in the tracker ends failed too
        return failed


def _add_metrics(session: Session, records: Sequence[RunRecord]) -> None:
    """Give each step of the runs the metrics it logged, in the order it logged them."""
    steps = {(record.id, step.name): step for record in records for step in record.steps}
    run_ids = [record.id for record in records]
    for start in range(0, len(run_ids), _BATCH):
        rows = session.execute(
            select(StepRun.run_id, StepRun.name, Metric.name, Metric.value)
            .join(Metric, Metric.step_run_id == StepRun.id)
            .where(StepRun.run_id.in_(run_ids[start : start + _BATCH]))
            .order_by(Metric.id)
        ).all()
        for run_id, step, name, value in rows:
            steps[run_id, step].metrics.append((name, value))


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
