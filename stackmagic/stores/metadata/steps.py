"""Step runs: started, completed, cached, failed, retried or skipped, with their artifacts."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from ...errors import StackmagicError
from ..artifacts import ArtifactInfo
from ..models import Artifact, Metric, Run, StepArtifact, StepRun, StepStatus, utcnow
from .connection import StoreConnection
from .records import INPUT, OUTPUT, CacheHit, MetricPoint, StoredArtifact, artifact_info


class StepRecords(StoreConnection):
    """What happened to each step of a run, as it happens."""

    def step_started(
        self,
        run_id: str,
        step: str,
        *,
        code_key: str,
        attempt: int,
        parts: Mapping[str, Any] | None = None,
        reason: str | None = None,
    ) -> None:
        """A try of the step begins; ``parts`` made its cache key, ``reason`` is why it runs."""
        with self._session(write=True) as session:
            row = _step_row(session, run_id, step)
            row.status, row.started_at, row.code_key, row.attempts = (
                StepStatus.RUNNING,
                utcnow(),
                code_key,
                attempt,
            )
            row.parts, row.reason = (dict(parts) if parts is not None else None), reason

    def step_job(self, run_id: str, step: str, *, job_id: str, url: str) -> None:
        """A try of the step runs as a step operator's job: which one, and where to see it."""
        with self._session(write=True) as session:
            row = _step_row(session, run_id, step)
            row.job_id, row.job_url = job_id, url

    def step_completed(
        self,
        run_id: str,
        step: str,
        *,
        code_key: str,
        cache_key: str,
        inputs: Mapping[str, StoredArtifact],
        outputs: Mapping[str, ArtifactInfo],
        metrics: Sequence[tuple[str, float] | MetricPoint],
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
                    uri=info.uri,
                    materializer=info.materializer,
                    type_name=info.type_name[:300],
                    content_hash=info.content_hash,
                    size=info.size,
                )
                row.artifacts.append(StepArtifact(direction=OUTPUT, name=name, artifact=artifact))
            row.metrics = [_metric(MetricPoint(*metric)) for metric in metrics]
        self._mirror_step_ended(run_id, step)

    def step_cached(
        self,
        run_id: str,
        step: str,
        *,
        code_key: str,
        cache_key: str,
        hit: CacheHit,
        inputs: Mapping[str, StoredArtifact],
        parts: Mapping[str, Any] | None = None,
    ) -> None:
        """Record a step served from the cache: its outputs are the original run's artifacts.

        Its ``parts`` are kept too: the next run compares with the last one, cached or not.
        The original run is locked meanwhile, as ``stackmagic gc`` locks the runs it collects:
        gc then sees these outputs in use, or it deleted them first and the step fails here.
        """
        with self._session(write=True) as session:
            original_run = session.get(Run, hit.run_id, with_for_update=True)
            if (
                original_run is not None
                and original_run.collected_at is not None
                and not _kept(session, {artifact.id for artifact in hit.outputs.values()})
            ):
                raise StackmagicError(
                    f"the cached result of step {step!r} (run {hit.run_id}) was deleted by "
                    "`stackmagic gc` as this run took it; run the pipeline again"
                )
            row = _step_row(session, run_id, step)
            now = utcnow()
            row.status, row.started_at, row.ended_at = StepStatus.CACHED, now, now
            row.code_key, row.cache_key, row.cached_from_id = code_key, cache_key, hit.step_run_id
            row.parts = dict(parts) if parts is not None else None
            _link_inputs(row, inputs)
            original = session.get(StepRun, hit.step_run_id)
            row.metrics = (
                [
                    _metric(MetricPoint(m.name, m.value, m.step, m.logged_at))
                    for m in original.metrics
                ]
                if original
                else []
            )
            for name, artifact in hit.outputs.items():
                row.artifacts.append(
                    StepArtifact(direction=OUTPUT, name=name, artifact_id=artifact.id)
                )
        self._mirror_step_ended(run_id, step)

    def step_failed(
        self,
        run_id: str,
        step: str,
        *,
        error: str,
        notebook_uri: str | None,
        inputs: Mapping[str, StoredArtifact],
    ) -> None:
        with self._session(write=True) as session:
            row = _step_row(session, run_id, step)
            row.status, row.ended_at, row.error, row.notebook_uri = (
                StepStatus.FAILED,
                utcnow(),
                error,
                notebook_uri,
            )
            row.started_at = row.started_at or row.ended_at
            _link_inputs(row, inputs)
            _forget_results(row)
        self._mirror_step_ended(run_id, step)

    def step_retrying(
        self, run_id: str, step: str, *, error: str, notebook_uri: str | None
    ) -> None:
        """A try failed and the orchestrator will start another: the step has not ended."""
        with self._session(write=True) as session:
            row = _step_row(session, run_id, step)
            row.status, row.error, row.notebook_uri = StepStatus.PENDING, error, notebook_uri

    def steps_skipped(self, run_id: str, reasons: Mapping[str, str]) -> None:
        """Mark steps skipped, each with why: steps skipped together may have different causes."""
        if not reasons:
            return
        with self._session(write=True) as session:
            for step, reason in reasons.items():
                row = _step_row(session, run_id, step)
                row.status, row.error = StepStatus.SKIPPED, reason

    def step_outputs(self, run_id: str, step: str) -> dict[str, StoredArtifact]:
        """The outputs a step of a past run left (``run_id`` exact)."""
        return self.steps_outputs(run_id, [step])[step]

    def steps_outputs(
        self, run_id: str, steps: Collection[str]
    ) -> dict[str, dict[str, StoredArtifact]]:
        """The outputs each of ``steps`` left in a run, in one query: what a step reads."""
        if not steps:
            return {}
        with self._session() as session:
            rows = session.scalars(
                select(StepRun)
                .where(StepRun.run_id == run_id, StepRun.name.in_(list(steps)))
                .options(selectinload(StepRun.artifacts).selectinload(StepArtifact.artifact))
            ).all()
            found = {
                row.name: {
                    link.name: StoredArtifact(link.artifact_id, artifact_info(link.artifact))
                    for link in row.artifacts
                    if link.direction == OUTPUT
                }
                for row in rows
            }
        missing = [step for step in steps if step not in found]
        if missing:
            raise StackmagicError(f"run {run_id} has no step {missing[0]!r} in the metadata store")
        return {step: found[step] for step in steps}


def _metric(point: MetricPoint) -> Metric:
    return Metric(
        name=point.name[:200],
        value=point.value,
        step=point.step,
        logged_at=point.logged_at or utcnow(),
    )


def _step_row(session: Session, run_id: str, step: str) -> StepRun:
    row = session.scalar(select(StepRun).where(StepRun.run_id == run_id, StepRun.name == step))
    if row is None:
        raise StackmagicError(f"run {run_id} has no step {step!r} in the metadata store")
    return row


def _kept(session: Session, artifact_ids: set[int]) -> bool:
    """Whether runs not collected use all these artifacts, so ``stackmagic gc`` keeps them."""
    used = session.scalars(
        select(StepArtifact.artifact_id)
        .join(StepRun, StepRun.id == StepArtifact.step_run_id)
        .join(Run, Run.id == StepRun.run_id)
        .where(StepArtifact.artifact_id.in_(sorted(artifact_ids)), Run.collected_at.is_(None))
    ).all()
    return artifact_ids <= set(used)


def _link_inputs(row: StepRun, inputs: Mapping[str, StoredArtifact]) -> None:
    known = {(link.direction, link.name) for link in row.artifacts}
    for name, artifact in inputs.items():
        if (INPUT, name) not in known:
            row.artifacts.append(StepArtifact(direction=INPUT, name=name, artifact_id=artifact.id))


def _forget_results(row: StepRun) -> None:
    """A step run again in the same run (a retried pod) replaces what it left before."""
    row.artifacts = [link for link in row.artifacts if link.direction == INPUT]
    row.metrics = []
