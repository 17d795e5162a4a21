"""A stack's components opened: the artifact store ready, the metadata store on first use.

Everything that reads or writes a stack's stores (a run, ``pipeline runs``,
``gc``, the server) opens it here, by name or as the active stack.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .flavors import (
    ArtifactStoreConfig,
    ComponentType,
    ExperimentTrackerConfig,
    MetadataStoreConfig,
    OrchestratorConfig,
    as_kind,
)
from .registry import Component, Registry
from .stores.artifacts import ArtifactStore
from .stores.metadata import MetadataStore
from .trackers.mirror import RunMirror


@dataclass
class OpenStack:
    """A stack's components, opened: ready to store, record and run.

    The metadata store connects on first use, not here: what needs no record (a dry run)
    then works with the database out of reach, and never waits for it.
    """

    name: str
    components: dict[ComponentType, Component]
    artifact_store: ArtifactStore
    #: the real value of a component's secret option
    resolve_secret: Callable[[Component, str], str]

    @classmethod
    def open(cls, registry: Registry, name: str | None = None) -> OpenStack:
        components = {c.type: c for c in stack_components(registry, name)}
        store = components[ComponentType.ARTIFACT_STORE]
        return cls(
            name or registry.active_stack_name(),
            components,
            as_kind(store.config, ArtifactStoreConfig).open(
                functools.partial(registry.resolve_secret, store)
            ),
            registry.resolve_secret,
        )

    @functools.cached_property
    def metadata(self) -> MetadataStore:
        """The metadata store; with an experiment tracker in the stack, it mirrors what it
        records there."""
        store = self.components[ComponentType.METADATA_STORE]
        opened = as_kind(store.config, MetadataStoreConfig).open(
            functools.partial(self.resolve_secret, store)
        )
        tracker = self.components.get(ComponentType.EXPERIMENT_TRACKER)
        if tracker is not None:
            opened.mirror = RunMirror(
                tracker.name,
                as_kind(tracker.config, ExperimentTrackerConfig),
                functools.partial(self.resolve_secret, tracker),
                self.artifact_store,
            )
        return opened

    @property
    def orchestrator_config(self) -> OrchestratorConfig:
        """The orchestrator's options, which make the :class:`Orchestrator` that runs steps."""
        return as_kind(self.components[ComponentType.ORCHESTRATOR].config, OrchestratorConfig)

    def connect_metadata(self) -> None:
        """Open the metadata store now, on this thread, where an error stops the command early."""
        self.metadata  # noqa: B018 - the property opens it

    def __enter__(self) -> OpenStack:
        return self

    def __exit__(self, *exc: object) -> None:
        """Let go of the metadata store's connections, if it was opened (a kernel lives long)."""
        if "metadata" in vars(self):
            self.metadata.close()

    def snapshot(self) -> dict[str, Any]:
        """What the run record keeps of the stack: flavors and options, secrets masked."""
        return {
            kind.value: {"name": c.name, "flavor": c.flavor, "options": c.config.shown()}
            for kind, c in self.components.items()
        }

    def local_paths(self) -> list[Path]:
        return local_paths(self.components.values())


def local_paths(components: Iterable[Component]) -> list[Path]:
    """Folders and files of a stack's local stores, which a bundle must never carry."""
    return [path for component in components for path in component.config.local_paths()]


def stack_components(registry: Registry, name: str | None = None) -> list[Component]:
    stack = registry.stack(name or registry.active_stack_name())
    return [registry.component(kind, member) for kind, member in stack.components.items()]
