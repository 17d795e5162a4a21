"""The cache: earlier step runs with the same key, and what the last run of a step was made of."""

from __future__ import annotations

from collections.abc import Iterator

from sqlalchemy import select
from sqlalchemy.orm import selectinload

from ..models import Artifact, Pipeline, Run, StepArtifact, StepRun, StepStatus
from .connection import StoreConnection
from .records import OUTPUT, CacheHit, PreviousStep, StoredArtifact, artifact_info


class CacheRecords(StoreConnection):
    """Looks up earlier step runs for the cache."""

    def has_code_key(self, code_key: str) -> bool:
        """Whether any step ever ran this code with these parameters (so a cache hit is possible)."""
        with self._session() as session:
            return (
                session.scalar(
                    select(StepRun.id)
                    .where(StepRun.code_key == code_key, StepRun.status == StepStatus.COMPLETED)
                    .limit(1)
                )
                is not None
            )

    def cache_hits(self, cache_key: str, *, other_than: str | None) -> Iterator[CacheHit]:
        """Completed step runs with this key in runs other than ``other_than``, newest first.

        The caller checks that their outputs still exist.
        """
        with self._session() as session:
            rows = session.scalars(
                select(StepRun)
                .where(
                    StepRun.cache_key == cache_key,
                    StepRun.status == StepStatus.COMPLETED,
                    StepRun.run_id != other_than,
                )
                .order_by(StepRun.ended_at.desc())
                .limit(5)
                .options(selectinload(StepRun.artifacts).selectinload(StepArtifact.artifact))
            ).all()
            hits = [
                CacheHit(
                    row.id,
                    row.run_id,
                    {
                        link.name: StoredArtifact(link.artifact.id, artifact_info(link.artifact))
                        for link in row.artifacts
                        if link.direction == OUTPUT
                    },
                )
                for row in rows
            ]
        yield from hits

    def previous_step(
        self, pipeline: str, step: str, *, other_than: str | None
    ) -> PreviousStep | None:
        """The newest step run of this pipeline's step that completed or came from the cache,
        in a run other than ``other_than``: what a user calls "last time"."""
        with self._session() as session:
            found = session.execute(
                select(StepRun.run_id, StepRun.parts)
                .join(StepRun.run)
                .join(Run.pipeline)
                .where(
                    Pipeline.name == pipeline,
                    StepRun.name == step,
                    StepRun.status.in_(StepStatus.WITH_OUTPUTS),
                    StepRun.run_id != other_than,
                )
                .order_by(StepRun.ended_at.desc())
                .limit(1)
            ).first()
        return None if found is None else PreviousStep(found.run_id, found.parts)

    def output_hashes(self, pipeline: str, prefix: str) -> dict[str, set[str]]:
        """Every content hash this pipeline's steps recorded for outputs named ``prefix...``.

        The files runs wrote beside the notebook (``file:PATH``) are outputs, not sources.
        """
        with self._session() as session:
            rows = session.execute(
                select(StepArtifact.name, Artifact.content_hash)
                .join(StepArtifact.artifact)
                .join(StepArtifact.step_run)
                .join(StepRun.run)
                .join(Run.pipeline)
                .where(
                    Pipeline.name == pipeline,
                    StepArtifact.direction == OUTPUT,
                    StepArtifact.name.startswith(prefix, autoescape=True),
                )
            ).all()
        found: dict[str, set[str]] = {}
        for name, digest in rows:
            found.setdefault(name[len(prefix) :], set()).add(digest)
        return found
