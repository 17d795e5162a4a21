"""The flavor registry: built-in flavors plus those other packages declare.

Like fsspec's protocols and papermill's engines, flavors are looked up by name;
third-party packages add their own through the ``stackmagic.flavors``
entry-point group, each entry point naming a :class:`FlavorConfig` subclass.
"""

from __future__ import annotations

import logging
from functools import cache

from ..component_type import ComponentType
from ..errors import StackmagicError
from .artifact_stores import (
    AzureArtifactStore,
    GCSArtifactStore,
    LocalArtifactStore,
    S3ArtifactStore,
)
from .base import (
    ArtifactStoreConfig,
    ExperimentTrackerConfig,
    FlavorConfig,
    MetadataStoreConfig,
    Option,
    OrchestratorConfig,
    StepOperatorConfig,
    as_kind,
    format_value,
    option_flag,
)
from .experiment_trackers import MLflowTracker, WandbTracker
from .metadata_stores import MySQLMetadataStore, PostgreSQLMetadataStore, SQLiteMetadataStore
from .orchestrators import (
    AirflowOrchestrator,
    KubeflowOrchestrator,
    KubernetesOrchestrator,
    LocalOrchestrator,
)
from .step_operators import (
    AzureMLStepOperator,
    KubernetesStepOperator,
    SageMakerStepOperator,
    VertexStepOperator,
)
from .vertex_orchestrator import VertexOrchestrator
from .vm_orchestrators import AWSVMOrchestrator, AzureVMOrchestrator, GCPVMOrchestrator

ENTRY_POINT_GROUP = "stackmagic.flavors"
_log = logging.getLogger("stackmagic")

BUILTIN_FLAVORS: tuple[type[FlavorConfig], ...] = (
    LocalArtifactStore,
    GCSArtifactStore,
    S3ArtifactStore,
    AzureArtifactStore,
    SQLiteMetadataStore,
    MySQLMetadataStore,
    PostgreSQLMetadataStore,
    LocalOrchestrator,
    KubeflowOrchestrator,
    VertexOrchestrator,
    AirflowOrchestrator,
    GCPVMOrchestrator,
    AWSVMOrchestrator,
    AzureVMOrchestrator,
    KubernetesOrchestrator,
    SageMakerStepOperator,
    AzureMLStepOperator,
    VertexStepOperator,
    KubernetesStepOperator,
    MLflowTracker,
    WandbTracker,
)


@cache
def _installed_flavors() -> tuple[type[FlavorConfig], ...]:
    """Flavors other packages declare; one that fails to load is reported and skipped."""
    from importlib.metadata import entry_points

    found = []
    for entry_point in entry_points(group=ENTRY_POINT_GROUP):
        try:
            flavor = entry_point.load()
        except Exception as exc:  # a broken plugin must not break stackmagic
            _log.warning(
                "stackmagic: skipping flavor %r from %s: %s",
                entry_point.name,
                entry_point.value,
                exc,
            )
            continue
        if not (isinstance(flavor, type) and issubclass(flavor, FlavorConfig)):
            _log.warning(
                "stackmagic: skipping flavor %r: %s is not a FlavorConfig subclass",
                entry_point.name,
                entry_point.value,
            )
            continue
        found.append(flavor)
    return tuple(found)


def flavors_of(component_type: ComponentType) -> dict[str, type[FlavorConfig]]:
    """Every flavor of one component type, built-in first."""
    flavors: dict[str, type[FlavorConfig]] = {}
    for flavor in (*BUILTIN_FLAVORS, *_installed_flavors()):
        if flavor.component_type is component_type:
            flavors.setdefault(flavor.flavor, flavor)
    return flavors


def get_flavor(component_type: ComponentType, name: str) -> type[FlavorConfig]:
    for flavor in BUILTIN_FLAVORS:
        if flavor.component_type is component_type and flavor.flavor == name:
            return flavor
    known = flavors_of(component_type)
    if name in known:
        return known[name]
    raise StackmagicError(
        f"unknown {component_type.noun} flavor {name!r}; valid flavors: {', '.join(known)}"
    )


__all__ = [
    "ArtifactStoreConfig",
    "BUILTIN_FLAVORS",
    "ComponentType",
    "ENTRY_POINT_GROUP",
    "ExperimentTrackerConfig",
    "FlavorConfig",
    "MetadataStoreConfig",
    "Option",
    "OrchestratorConfig",
    "StepOperatorConfig",
    "as_kind",
    "flavors_of",
    "format_value",
    "get_flavor",
    "option_flag",
]
