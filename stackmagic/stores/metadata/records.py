"""What the metadata store hands out: runs and step runs as plain records, artifacts, cache hits."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple

from ...errors import StackmagicError
from ..artifacts import ArtifactInfo
from ..models import Artifact, Run

INPUT, OUTPUT = "input", "output"


@dataclass(frozen=True)
class StoredArtifact:
    id: int
    info: ArtifactInfo


@dataclass(frozen=True)
class CacheHit:
    step_run_id: int
    run_id: str
    outputs: dict[str, StoredArtifact]


@dataclass(frozen=True)
class PreviousStep:
    """The last step run of a pipeline's step that has outputs: what "last time" means to a user."""

    run_id: str
    #: what its cache key was made of; None if an older stackmagic recorded it
    parts: dict[str, Any] | None


class MetricPoint(NamedTuple):
    """One value ``log_metric`` was given: the series it belongs to and when."""

    name: str
    value: float
    #: where it falls in its series (an epoch); None: in the order logged
    step: int | None = None
    logged_at: datetime | None = None


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
    #: why it ran rather than came from the cache ("code changed (cell 7)"); None if it did not run
    reason: str | None = None
    #: the step operator's job that ran its last try, and the job's console page
    job_id: str | None = None
    job_url: str | None = None
    inputs: dict[str, ArtifactInfo] = field(default_factory=dict)
    outputs: dict[str, ArtifactInfo] = field(default_factory=dict)
    metrics: list[tuple[str, float]] = field(default_factory=list)
    #: every value logged, with its step and time: what an experiment tracker plots
    metric_history: list[MetricPoint] = field(default_factory=list)

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
    #: when ``stackmagic gc`` deleted its artifacts (those kept runs still use stay)
    collected_at: datetime | None = None
    #: the schedule that started it (its name); None for a run someone asked for
    schedule: str | None = None
    #: the run's twin in the stack's experiment tracker, where to see it, and why it is not
    #: (fully) mirrored there when it is not
    tracker_run_id: str | None = None
    tracker_url: str | None = None
    tracker_note: str | None = None

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


def artifact_info(artifact: Artifact) -> ArtifactInfo:
    return ArtifactInfo(
        uri=artifact.uri,
        materializer=artifact.materializer,
        content_hash=artifact.content_hash,
        size=artifact.size,
        type_name=artifact.type_name,
    )


def run_record(run: Run, *, with_artifacts: bool) -> RunRecord:
    steps = []
    for row in run.steps:
        record = StepRecord(
            name=row.name,
            status=row.status,
            started_at=row.started_at,
            ended_at=row.ended_at,
            cache_key=row.cache_key,
            cached_from=(
                f"{row.cached_from.run_id}/{row.cached_from.name}"
                if with_artifacts and row.cached_from is not None
                else None
            ),
            attempts=row.attempts,
            error=row.error,
            notebook_uri=row.notebook_uri,
            reason=row.reason,
            job_id=row.job_id,
            job_url=row.job_url,
        )
        if with_artifacts:
            for link in row.artifacts:
                side = record.inputs if link.direction == INPUT else record.outputs
                side[link.name] = artifact_info(link.artifact)
            record.metrics = [(metric.name, metric.value) for metric in row.metrics]
            record.metric_history = [
                MetricPoint(metric.name, metric.value, metric.step, metric.logged_at)
                for metric in row.metrics
            ]
        steps.append(record)
    return RunRecord(
        id=run.id,
        pipeline=run.pipeline.name,
        notebook=run.notebook,
        status=run.status,
        started_at=run.started_at,
        ended_at=run.ended_at,
        stack_name=run.stack_name,
        stack=run.stack,
        bundle_uri=run.bundle_uri,
        options=run.options,
        error=run.error,
        parameters={p.name: p.value for p in run.parameters},
        overridden=[p.name for p in run.parameters if p.overridden],
        steps=steps,
        orchestrator_run_id=run.orchestrator_run_id,
        orchestrator_url=run.orchestrator_url,
        collected_at=run.collected_at,
        schedule=run.schedule,
        tracker_run_id=run.tracker_run_id,
        tracker_url=run.tracker_url,
        tracker_note=run.tracker_note,
    )
