"""Mirroring, best effort: a tracker that is down or refuses never fails a run.

A :class:`RunMirror` hangs on an opened metadata store (``store.mirror``), which
tells it of each run it records, each step that ends and each run's end, after the
record is written. It reads the record back and hands it to the tracker's client.
When the tracker fails, the run says so (``tracker_note``), one line goes to
stderr, and this process stops trying for that run, so a tracker out of reach
costs one timeout, not one per step.
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Callable
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import StackmagicError
from .base import ExperimentTracker, StepNotebooks, TrackedRun

if TYPE_CHECKING:
    from ..flavors.base import ExperimentTrackerConfig, SecretResolver
    from ..stores.artifacts import ArtifactStore
    from ..stores.metadata import MetadataStore, RunRecord

_NOTE_LENGTH = 500


class RunMirror:
    """Mirrors the runs one metadata store records to the stack's experiment tracker."""

    def __init__(
        self,
        name: str,
        config: ExperimentTrackerConfig,
        secret: SecretResolver,
        artifact_store: ArtifactStore,
    ) -> None:
        self.name, self.config, self.secret = name, config, secret
        self.artifact_store = artifact_store
        #: runs this process failed to mirror: not tried again here
        self._given_up: set[str] = set()

    @cached_property
    def tracker(self) -> ExperimentTracker[Any]:
        return self.config.tracker(self.secret)

    def run_created(self, store: MetadataStore, run_id: str) -> None:
        def mirror(run: RunRecord, notebooks: StepNotebooks) -> None:
            self._twin(store, run)

        self._mirroring(store, run_id, mirror)

    def step_ended(self, store: MetadataStore, run_id: str, step: str) -> None:
        def mirror(run: RunRecord, notebooks: StepNotebooks) -> None:
            self.tracker.step_ended(run, self._twin(store, run), run.step(step), notebooks)

        self._mirroring(store, run_id, mirror)

    def run_ended(self, store: MetadataStore, run_id: str) -> None:
        """The run's end, and what other processes could not mirror: once this is done, the
        run is whole in the tracker, and a note that said otherwise goes."""

        def mirror(run: RunRecord, notebooks: StepNotebooks) -> None:
            self.tracker.run_ended(run, self._twin(store, run), notebooks)
            if run.tracker_note:
                store.run_not_mirrored(run.id, None)

        self._mirroring(store, run_id, mirror)

    def _twin(self, store: MetadataStore, run: RunRecord) -> TrackedRun:
        """The run's twin in the tracker, made now if no process made it yet.

        Steps on several machines may each be first: the store keeps one twin, and a
        process whose twin lost removes its own.
        """
        if run.tracker_run_id:
            return TrackedRun(run.tracker_run_id, run.tracker_url or "")
        made = self.tracker.start_run(run)
        kept = store.claim_tracker_run(run.id, made.id, made.url)
        if kept != made:
            self.tracker.discard_run(made)
        run.tracker_run_id, run.tracker_url = kept.id, kept.url
        return kept

    def _mirroring(
        self,
        store: MetadataStore,
        run_id: str,
        mirror: Callable[[RunRecord, StepNotebooks], None],
    ) -> None:
        if run_id in self._given_up:
            return
        try:
            run = store.run(run_id)
            with tempfile.TemporaryDirectory(prefix="stackmagic-tracker-") as folder:
                upload = self.config.notebooks == "upload"
                mirror(run, StepNotebooks(self.artifact_store, Path(folder), upload=upload))
        except Exception as error:  # best effort: the run goes on, and says what was lost
            self._given_up.add(run_id)
            reason = str(error) if isinstance(error, StackmagicError) else _described(error)
            note = f"not mirrored to the {self.config.flavor} tracker {self.name!r}: {reason}"
            note = note.splitlines()[0][:_NOTE_LENGTH]
            print(
                f"stackmagic: run {run_id} {note}; it is recorded in the metadata store as usual",
                file=sys.stderr,
                flush=True,
            )
            try:
                store.run_not_mirrored(run_id, note)
            except StackmagicError:  # the store is out of reach too: the line above says it
                pass


def _described(error: Exception) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0]}" if text else type(error).__name__
