"""What a tracker's client does: make a run's twin, mirror its steps, close it."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from ..stores.models import StepStatus

if TYPE_CHECKING:
    from ..flavors.base import ExperimentTrackerConfig, SecretResolver
    from ..stores.artifacts import ArtifactStore
    from ..stores.metadata import RunRecord, StepRecord

_Config = TypeVar("_Config", bound="ExperimentTrackerConfig")


@dataclass(frozen=True)
class TrackedRun:
    """A pipeline run's twin in the tracker: its id there, and the page that shows it."""

    id: str
    url: str


class StepNotebooks:
    """A run's executed step notebooks, as a tracker takes them: local copies or links."""

    def __init__(self, store: ArtifactStore, folder: Path, *, upload: bool) -> None:
        self.store, self.folder, self.upload = store, folder, upload

    def local_copy(self, step: StepRecord) -> Path | None:
        """The step's executed notebook in a folder of this machine, as ``STEP.ipynb``."""
        if not step.notebook_uri:
            return None
        path = self.folder / f"{step.name}.ipynb"
        path.write_bytes(self.store.read_bytes(step.notebook_uri))
        return path


class ExperimentTracker(ABC, Generic[_Config]):
    """One tracker's client, its secrets resolved. Errors it raises are one line each
    (:class:`~stackmagic.errors.StackmagicError`): they are shown as why a run is not mirrored.
    """

    def __init__(self, config: _Config, secret: SecretResolver) -> None:
        self.config, self.secret = config, secret

    @abstractmethod
    def start_run(self, run: RunRecord) -> TrackedRun:
        """Make the twin of a run just recorded, with its parameters and tags."""

    def discard_run(self, tracked: TrackedRun) -> None:
        """Another process made the run's twin at the same moment: remove this one."""

    def step_ended(
        self, run: RunRecord, tracked: TrackedRun, step: StepRecord, notebooks: StepNotebooks
    ) -> None:
        """Mirror one step that ended (ran, came from the cache, or failed) from where it ran.

        By default nothing: the tracker takes the whole run in ``run_ended``.
        """

    @abstractmethod
    def run_ended(self, run: RunRecord, tracked: TrackedRun, notebooks: StepNotebooks) -> None:
        """Mirror the run's end: its status, and whatever of it is not mirrored yet."""


def pipeline_tags(run: RunRecord) -> dict[str, str]:
    """What every tracker keeps of a run beside its parameters: where it ran, and which run."""
    components = run.stack
    tags = {
        "stackmagic.run_id": run.id,
        "stackmagic.pipeline": run.pipeline,
        "stackmagic.notebook": run.notebook,
        "stackmagic.stack": run.stack_name,
        "stackmagic.orchestrator": _member(components, "orchestrator"),
    }
    if "step-operator" in components:
        tags["stackmagic.step_operator"] = _member(components, "step-operator")
    if run.schedule:
        tags["stackmagic.schedule"] = run.schedule
    if run.orchestrator_url:
        tags["stackmagic.orchestrator_url"] = run.orchestrator_url
    return tags


def cache_status(step: StepRecord) -> str:
    """``cached`` (its outputs reused from ``cached_from``), ``ran``, ``failed`` or ``skipped``."""
    return {
        StepStatus.CACHED: "cached",
        StepStatus.COMPLETED: "ran",
        StepStatus.FAILED: "failed",
    }.get(step.status, "skipped")


def _member(components: dict[str, Any], kind: str) -> str:
    entry = components.get(kind) or {}
    return f"{entry.get('name', '?')} ({entry.get('flavor', '?')})"
