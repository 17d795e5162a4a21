"""What ``stackmagic gc`` asks the store: the runs there are, and what the runs it keeps use."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, update

from ..models import Artifact, Pipeline, Run, RunStatus, StepArtifact, StepRun, utcnow
from .connection import StoreConnection

#: Runs marked collected per statement: within every database's limit on parameters.
_BATCH = 500


@dataclass(frozen=True)
class RunSummary:
    id: str
    pipeline: str
    started_at: datetime
    running: bool
    collected: bool


class CollectionRecords(StoreConnection):
    """Runs as ``stackmagic gc`` sees them, and their collection."""

    def run_summaries(self) -> list[RunSummary]:
        """Every run, newest first. Call ``fail_abandoned_runs`` first: a dead run is not running."""
        with self._session() as session:
            rows = session.execute(
                select(Run.id, Pipeline.name, Run.started_at, Run.status, Run.collected_at)
                .join(Run.pipeline)
                .order_by(Run.started_at.desc())
            ).all()
        return [
            RunSummary(
                run_id, pipeline, started, status == RunStatus.RUNNING, collected is not None
            )
            for run_id, pipeline, started, status, collected in rows
        ]

    def collect_runs(self, run_ids: Collection[str], *, dry_run: bool) -> set[str]:
        """Mark the runs collected (not in a dry run); the URIs the other runs use, which stay.

        Those are every artifact a run not collected reads or made (a cached step's outputs
        are the artifacts of the run that made them) and its executed notebooks. Every
        collected run is locked before they are read, as ``step_cached`` locks the run whose
        result it reuses: a run reusing a result gc is about to delete either records that
        first, and the result stays, or sees it deleted and fails.
        """
        wanted = list(run_ids)
        with self._session(write=not dry_run) as session:
            marking = [] if dry_run else wanted
            for start in range(0, len(marking), _BATCH):
                session.execute(
                    update(Run)
                    .where(
                        Run.id.in_(marking[start : start + _BATCH]),
                        Run.status != RunStatus.RUNNING,
                        Run.collected_at.is_(None),
                    )
                    .values(collected_at=utcnow())
                )
            if not dry_run:
                session.execute(
                    select(Run.id).where(Run.collected_at.is_not(None)).with_for_update()
                )
            kept = Run.collected_at.is_(None)
            artifacts = session.execute(
                select(StepRun.run_id, Artifact.uri)
                .join(StepArtifact, StepArtifact.step_run_id == StepRun.id)
                .join(Artifact, Artifact.id == StepArtifact.artifact_id)
                .join(Run, Run.id == StepRun.run_id)
                .where(kept)
            ).all()
            notebooks = session.execute(
                select(StepRun.run_id, StepRun.notebook_uri)
                .join(Run, Run.id == StepRun.run_id)
                .where(kept, StepRun.notebook_uri.is_not(None))
            ).all()
        leaving = set(wanted)
        return {
            uri
            for run_id, uri in (*artifacts, *notebooks)
            if uri is not None and run_id not in leaving
        }
