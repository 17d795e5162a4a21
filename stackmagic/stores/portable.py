"""A stack's stores described for a process elsewhere: a Kubeflow pod, a cloud VM.

"Stores" here takes in the stack's step operator and experiment tracker too: a
step handed to the one, and every record mirrored to the other, need them there.

Such a process has no registry and no secret file. It gets each store's
flavor and options, with every secret option replaced by a reference to an
environment variable (``env:STACKMAGIC_METADATA_STORE_PASSWORD``); whoever
starts the process sets those variables (from a Kubernetes secret, say). The
description itself holds no secret, so it may go into a compiled pipeline.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from ..component_type import ComponentType
from ..errors import StackmagicError
from ..flavors import ArtifactStoreConfig, FlavorConfig, MetadataStoreConfig, as_kind, get_flavor
from ..flavors.base import ExperimentTrackerConfig, SecretResolver
from ..secrets import ENV_PREFIX, SecretStore
from ..trackers.mirror import RunMirror

if TYPE_CHECKING:
    from ..registry import Component
    from .artifacts import ArtifactStore
    from .metadata import MetadataStore

STORES = (ComponentType.ARTIFACT_STORE, ComponentType.METADATA_STORE)
#: the stack's optional members that a description carries when the stack has them
OPTIONAL = (ComponentType.STEP_OPERATOR, ComponentType.EXPERIMENT_TRACKER)
_Config = TypeVar("_Config", bound=FlavorConfig)


def secret_variable(kind: ComponentType, option: str) -> str:
    """``metadata-store``, ``password`` -> ``STACKMAGIC_METADATA_STORE_PASSWORD``."""
    return f"STACKMAGIC_{kind.value}_{option}".upper().replace("-", "_")


def describe_stores(stack: str, components: Mapping[ComponentType, Component]) -> dict[str, Any]:
    """Each store's name, flavor and options, secrets as environment references; and the
    stack's step operator's and experiment tracker's, which steps need where they run."""
    described: dict[str, Any] = {"stack": stack}
    for kind in _described_kinds(components):
        component = components[kind]
        options = component.config.stored()
        for option in component.config.secret_references():
            options[option] = ENV_PREFIX + secret_variable(kind, option)
        described[kind.value] = {
            "name": component.name,
            "flavor": component.flavor,
            "options": options,
        }
    return described


def secret_variables(
    components: Mapping[ComponentType, Component],
) -> dict[str, tuple[Component, str]]:
    """The environment variables a described stack reads, and the secret option behind each."""
    return {
        secret_variable(kind, option): (components[kind], option)
        for kind in _described_kinds(components)
        for option in components[kind].config.secret_references()
    }


def _described_kinds(components: Mapping[ComponentType, Component]) -> list[ComponentType]:
    return [*STORES, *(kind for kind in OPTIONAL if kind in components)]


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
    return {
        value[len(ENV_PREFIX) :]
        for entry in description.values()
        if isinstance(entry, Mapping)
        for value in entry.get("options", {}).values()
        if isinstance(value, str) and value.startswith(ENV_PREFIX)
    }


def open_stores(description: Mapping[str, Any]) -> tuple[ArtifactStore, MetadataStore]:
    """The stores a description names, their secrets read from the environment; the
    metadata store mirrors what it records to the experiment tracker, if there is one."""
    secrets = SecretStore()
    artifacts = described_config(description, ComponentType.ARTIFACT_STORE, ArtifactStoreConfig)
    artifact_store = artifacts.open(_from_environment(artifacts, secrets))
    metadata = described_config(description, ComponentType.METADATA_STORE, MetadataStoreConfig)
    store = metadata.open(_from_environment(metadata, secrets))
    tracker = description.get(ComponentType.EXPERIMENT_TRACKER.value)
    if isinstance(tracker, Mapping):
        config = described_config(
            description, ComponentType.EXPERIMENT_TRACKER, ExperimentTrackerConfig
        )
        store.mirror = RunMirror(
            str(tracker.get("name", "")), config, _read_now(config), artifact_store
        )
    return artifact_store, store


def described_config(
    description: Mapping[str, Any], kind: ComponentType, base: type[_Config]
) -> _Config:
    """The options of the ``kind`` component that ``description`` names, checked by its flavor."""
    entry = description.get(kind.value)
    if not isinstance(entry, Mapping):
        raise StackmagicError(f"the stack description has no {kind.noun}")
    return as_kind(
        get_flavor(kind, entry["flavor"]).from_options(entry["options"], Path.cwd()), base
    )


def environment_secrets(config: FlavorConfig) -> dict[str, str]:
    """A described component's secret options, read from the environment now: before the
    stores' secret variables are dropped from it, out of the steps' reach."""
    resolve = _from_environment(config, SecretStore())
    return {option: resolve(option) for option in config.secret_references()}


def _read_now(config: FlavorConfig) -> SecretResolver:
    """The component's secrets as the environment has them now, before they are dropped from
    it; one missing is an error when asked for, so only what needs it (mirroring) fails."""
    try:
        return environment_secrets(config).__getitem__
    except StackmagicError as error:
        missing = error  # the except clause's own name is gone once it ends

    def unset(option: str) -> str:
        raise missing

    return unset


def _from_environment(config: FlavorConfig, secrets: SecretStore) -> SecretResolver:
    """A store's secret options, each an ``env:VARIABLE`` that the process was started with."""
    kind = config.component_type

    def resolve(option: str) -> str:
        return secrets.resolve(
            getattr(config, option),
            what=f"the {kind.noun}'s --{option.replace('_', '-')}",
            fix=f"give the step the secret that holds {secret_variable(kind, option)}",
        )

    return resolve


def wanted_secrets(name: str, text: str, stores: Mapping[str, Any]) -> dict[str, str]:
    """The secret's values the stores' description reads; a missing one is named, except the
    experiment tracker's: without it the run goes on, unmirrored, and says so."""
    try:
        secret = json.loads(text)
    except ValueError:
        secret = None
    if not isinstance(secret, dict):
        raise StackmagicError(
            f"the secret {name!r} must be a JSON object of STACKMAGIC_... "
            "variables and their values"
        )
    wanted = referenced_variables(stores)
    tracker = ComponentType.EXPERIMENT_TRACKER.value
    optional = referenced_variables({tracker: stores[tracker]}) if tracker in stores else set()
    missing = sorted(wanted - optional - set(secret))
    if missing:
        raise StackmagicError(
            f"the secret {name!r} has no {', '.join(missing)}: add "
            f"{'it' if len(missing) == 1 else 'them'} to the secret"
        )
    return {name: str(secret[name]) for name in wanted if name in secret}
