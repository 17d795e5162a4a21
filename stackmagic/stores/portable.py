"""A stack's stores described for a process elsewhere: a Kubeflow pod, a cloud VM.

Such a process has no registry and no secret file. It gets each store's
flavor and options, with every secret option replaced by a reference to an
environment variable (``env:STACKMAGIC_METADATA_STORE_PASSWORD``); whoever
starts the process sets those variables (from a Kubernetes secret, say). The
description itself holds no secret, so it may go into a compiled pipeline.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..component_type import ComponentType
from ..errors import StackmagicError
from ..flavors import get_flavor
from ..secrets import ENV_PREFIX, SecretStore

if TYPE_CHECKING:
    from ..registry import Component
    from .artifacts import ArtifactStore
    from .metadata import MetadataStore

STORES = (ComponentType.ARTIFACT_STORE, ComponentType.METADATA_STORE)


def secret_variable(kind: ComponentType, option: str) -> str:
    """``metadata-store``, ``password`` -> ``STACKMAGIC_METADATA_STORE_PASSWORD``."""
    return f"STACKMAGIC_{kind.value}_{option}".upper().replace("-", "_")


def describe_stores(stack: str, components: Mapping[ComponentType, Component]) -> dict[str, Any]:
    """Each store's name, flavor and options, secrets as environment references."""
    described: dict[str, Any] = {"stack": stack}
    for kind in STORES:
        component = components[kind]
        options = component.config.stored()
        for option in component.config.secret_references():
            options[option] = ENV_PREFIX + secret_variable(kind, option)
        described[kind.value] = {"name": component.name, "flavor": component.flavor, "options": options}
    return described


def secret_variables(
    components: Mapping[ComponentType, Component],
) -> dict[str, tuple[Component, str]]:
    """The environment variables a described stack reads, and the secret option behind each."""
    return {
        secret_variable(kind, option): (components[kind], option)
        for kind in STORES
        for option in components[kind].config.secret_references()
    }


def secret_environment(
    components: Mapping[ComponentType, Component], resolve: Callable[[Component, str], str]
) -> dict[str, str]:
    """The secret variables with their real values, for a process started on this machine."""
    return {
        variable: resolve(component, option)
        for variable, (component, option) in secret_variables(components).items()
    }


def referenced_variables(description: Mapping[str, Any]) -> set[str]:
    """The environment variables a stores' description reads its secrets from."""
    return {value[len(ENV_PREFIX):] for entry in description.values() if isinstance(entry, Mapping)
            for value in entry.get("options", {}).values()
            if isinstance(value, str) and value.startswith(ENV_PREFIX)}


def open_stores(description: Mapping[str, Any]) -> tuple[ArtifactStore, MetadataStore]:
    """The stores a description names, their secrets read from the environment."""
    opened = []
    secrets = SecretStore()
    for kind in STORES:
        entry = description.get(kind.value)
        if not isinstance(entry, Mapping):
            raise StackmagicError(f"the stack description has no {kind.noun}")
        config = get_flavor(kind, entry["flavor"]).from_options(entry["options"], Path.cwd())

        def resolve(option: str, config: Any = config, kind: ComponentType = kind) -> str:
            return secrets.resolve(
                getattr(config, option), what=f"the {kind.noun}'s --{option.replace('_', '-')}",
                fix=f"give the step the secret that holds {secret_variable(kind, option)}",
            )

        opened.append(config.open(resolve))
    return opened[0], opened[1]
