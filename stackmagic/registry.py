"""The registry: components, stacks and the active stack of one project.

Everything lives in ``config.json`` inside the project's ``.stackmagic/``
folder (see :mod:`stackmagic.locations`). Every change is one locked, atomic
read-validate-write (:class:`~stackmagic.jsonfile.JsonFile`): a refused change
writes nothing, and eight processes registering at once lose nothing.
"""

from __future__ import annotations

import contextvars
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import StackmagicError
from .flavors import ComponentType, FlavorConfig, flavors_of, get_flavor, option_flag
from .jsonfile import JsonFile
from .locations import PROJECT_DIR_NAME, find_project_dir, user_registry_dir
from .registry_document import (
    DEFAULT,
    REQUIRED_IN_STACK,
    SCHEMA_VERSION,
    check_name,
    component_entry,
    fresh_state,
    malformed,
    refuse_case_twin,
    stack_entry,
)
from .secrets import SecretStore

STACK_ENV = "STACKMAGIC_STACK"
CONFIG_FILE = "config.json"

#: What to do about a damaged ``config.json``; it is never overwritten.
_REMEDY = (
    "restore it (from version control or a backup), or move it aside and run `stackmagic init` "
    "for a fresh one"
)
_GITIGNORE = "# Keep the stack definitions, not the local stores.\n*\n!.gitignore\n!config.json\n"

#: The ``stack register`` option naming each member (ZenML's letters).
STACK_FLAGS = {
    ComponentType.METADATA_STORE: "-m",
    ComponentType.ARTIFACT_STORE: "-a",
    ComponentType.ORCHESTRATOR: "-o",
    ComponentType.STEP_OPERATOR: "-s",
    ComponentType.EXPERIMENT_TRACKER: "-e",
}


@dataclass(frozen=True)
class Component:
    type: ComponentType
    name: str
    config: FlavorConfig

    @property
    def flavor(self) -> str:
        return self.config.flavor


@dataclass(frozen=True)
class Stack:
    name: str
    components: Mapping[ComponentType, str]


#: Where to look for the project in this context instead of the working directory: a
#: Jupyter server's root folder, for the requests it serves (a process-wide chdir would race).
PROJECT_START: contextvars.ContextVar[Path | None] = contextvars.ContextVar(
    "stackmagic_project_start", default=None
)


class Registry:
    """One project's stacks; every read sees what other processes last wrote."""

    def __init__(self, directory: Path, secrets: SecretStore | None = None) -> None:
        self.directory = directory
        self.secrets = secrets or SecretStore()
        self._file = JsonFile(directory / CONFIG_FILE, remedy=_REMEDY)
        self._read_version: tuple[int, int, int] | None = None
        self._read_state: dict[str, Any] = {}

    # -- finding and creating -------------------------------------------------

    @classmethod
    def open(cls, start: Path | None = None) -> Registry:
        """The project registry above ``start`` (or :data:`PROJECT_START`, or the working
        directory), else the user's."""
        directory = find_project_dir(start or PROJECT_START.get()) or user_registry_dir()
        registry = cls(directory)
        registry._ensure_created()
        return registry

    @classmethod
    def init(cls, folder: Path) -> tuple[Registry, bool]:
        """Create ``folder/.stackmagic``; returns the registry and whether it was new."""
        registry = cls(folder.resolve() / PROJECT_DIR_NAME)
        return registry, registry._ensure_created()

    def _ensure_created(self) -> bool:
        """Make the registry unless there is one; one that is there must be readable."""
        if (self.directory / CONFIG_FILE).exists():
            self._state()
            return False
        self.directory.mkdir(parents=True, exist_ok=True)
        gitignore = self.directory / ".gitignore"
        if not gitignore.exists():
            gitignore.write_text(_GITIGNORE, encoding="utf-8")
        with self._file.edit(fresh_state):
            pass
        return True

    # -- reading ---------------------------------------------------------------

    def _state(self) -> dict[str, Any]:
        """The registry as last written; parsed again only when the file changes.

        Writers replace the file by renaming a new one over it, so a new inode
        (or size, or mtime) means new content. Callers only read the result.
        """
        try:
            stat = self._file.path.stat()
            version = (stat.st_ino, stat.st_size, stat.st_mtime_ns)
        except FileNotFoundError:
            version = None
        if version is None or version != self._read_version:
            self._read_state = self._checked(self._file.read(fresh_state))
            self._read_version = version
        return self._read_state

    def components(self, kind: ComponentType) -> list[Component]:
        entries = self._state()["components"].get(kind.value, {})
        return [self._component(kind, name, entry) for name, entry in sorted(entries.items())]

    def component(self, kind: ComponentType, name: str) -> Component:
        return self._component(kind, name, component_entry(self._state(), kind, name))

    def _component(self, kind: ComponentType, name: str, entry: Mapping[str, Any]) -> Component:
        flavor = get_flavor(kind, entry["flavor"])
        return Component(kind, name, flavor.from_options(entry["options"], self.directory))

    def stacks(self) -> list[Stack]:
        return [_stack(name, entry) for name, entry in sorted(self._state()["stacks"].items())]

    def stack(self, name: str) -> Stack:
        return _stack(name, stack_entry(self._state(), name))

    def stored_active_stack(self) -> str:
        return str(self._state()["active_stack"])

    def active_stack_name(self) -> str:
        """The active stack; ``STACKMAGIC_STACK`` overrides it for one process."""
        override = os.environ.get(STACK_ENV)
        if not override:
            return self.stored_active_stack()
        if override not in self._state()["stacks"]:
            raise StackmagicError(
                f"{STACK_ENV}={override} names no registered stack; unset it or register "
                f"that stack (`stackmagic stack list` shows the stacks)"
            )
        return override

    def resolve_secret(self, component: Component, option: str) -> str:
        """The real value of a secret option, for the code that uses the component."""
        flag = option_flag(option)
        return self.secrets.resolve(
            getattr(component.config, option),
            what=f"{flag} of {component.type.noun} {component.name!r}",
            fix=f"set it again with `stackmagic {component.type.value} update {component.name} {flag}=...`",
        )

    # -- changing ----------------------------------------------------------------

    @contextmanager
    def _edit(self) -> Iterator[dict[str, Any]]:
        with self._file.edit(fresh_state) as state:
            self._checked(state)
            yield state

    def _checked(self, state: dict[str, Any]) -> dict[str, Any]:
        """The document, if it has the registry's shape: a hand edit may have broken it."""
        version = state.get("version")
        if version != SCHEMA_VERSION:
            raise StackmagicError(
                f"{self._file.path} has format version {version!r}, which this stackmagic does not "
                "read; upgrade stackmagic (`pip install -U stackmagic`)"
            )
        damaged = malformed(state)
        if damaged:
            raise self._file.damaged(f"is damaged ({', '.join(damaged)} missing or malformed)")
        return state

    def register_component(
        self,
        kind: ComponentType,
        name: str,
        flavor: str,
        options: Mapping[str, str | None],
        base_dir: Path,
    ) -> Component:
        check_name(name, kind.noun)
        config = get_flavor(kind, flavor).from_options(options, base_dir, given_only=True)
        config.check_given()
        with self._edit() as state:
            entries = state["components"].setdefault(kind.value, {})
            if name in entries:
                raise StackmagicError(
                    f"{kind.noun} {name!r} already exists; change it with "
                    f"`stackmagic {kind.value} update {name} --OPTION=VALUE` or pick another name"
                )
            refuse_case_twin(entries, name, kind.noun)
            with self._storing_secrets(kind, name, config, {}):
                entries[name] = {"flavor": config.flavor, "options": config.stored()}
        return self.component(kind, name)

    def update_component(
        self, kind: ComponentType, name: str, options: Mapping[str, str | None], base_dir: Path
    ) -> Component:
        if not options:
            raise StackmagicError("nothing to change: give options such as --OPTION=VALUE")
        with self._edit() as state:
            entry = component_entry(state, kind, name)
            config = get_flavor(kind, entry["flavor"]).from_options(
                entry["options"], self.directory
            )
            old_secrets = config.secret_references()
            config.apply(options)
            config.resolve_paths(base_dir, options)
            config.check()
            config.check_given()
            replaced = [
                ref for option, ref in old_secrets.items() if getattr(config, option) != ref
            ]
            with self._storing_secrets(kind, name, config, old_secrets):
                entry["options"] = config.stored()
                for stack_name, stack_entry in state["stacks"].items():
                    if stack_entry.get(kind.value) == name:
                        try:
                            self._check_stack(state, stack_name)
                        except StackmagicError as error:
                            raise StackmagicError(
                                f"that change to {kind.noun} {name!r} would break {error}"
                            ) from None
        self.secrets.discard(replaced)
        return self.component(kind, name)

    def delete_component(self, kind: ComponentType, name: str) -> None:
        with self._edit() as state:
            entry = component_entry(state, kind, name)
            users = sorted(
                s for s, stack in state["stacks"].items() if stack.get(kind.value) == name
            )
            if users:
                raise StackmagicError(
                    f"{kind.noun} {name!r} is used by stack{'s' if len(users) > 1 else ''} "
                    f"{', '.join(users)}; delete or change {'them' if len(users) > 1 else 'it'} first"
                )
            del state["components"][kind.value][name]
        self.secrets.discard(str(value) for value in entry["options"].values())

    def register_stack(self, name: str, members: Mapping[ComponentType, str]) -> Stack:
        check_name(name, "stack")
        with self._edit() as state:
            if name in state["stacks"]:
                raise StackmagicError(
                    f"stack {name!r} already exists; change it with `stackmagic stack update {name}` "
                    "or pick another name"
                )
            refuse_case_twin(state["stacks"], name, "stack")
            state["stacks"][name] = {kind.value: member for kind, member in members.items()}
            self._check_stack(state, name)
        return self.stack(name)

    def update_stack(self, name: str, changes: Mapping[ComponentType, str | None]) -> Stack:
        """Swap components of a stack; ``None`` removes an optional one (step operator, tracker)."""
        if not changes:
            raise StackmagicError(
                "nothing to change: give -m, -a, -o, -s, -e, --no-step-operator or "
                "--no-experiment-tracker"
            )
        with self._edit() as state:
            entry = stack_entry(state, name)
            for kind, member in changes.items():
                if member is None:
                    entry.pop(kind.value, None)
                else:
                    entry[kind.value] = member
            self._check_stack(state, name)
        return self.stack(name)

    def set_active_stack(self, name: str) -> Stack:
        with self._edit() as state:
            stack_entry(state, name)
            self._check_stack(state, name)
            state["active_stack"] = name
        return self.stack(name)

    def delete_stack(self, name: str) -> None:
        with self._edit() as state:
            stack_entry(state, name)
            if name == DEFAULT:
                raise StackmagicError("the default stack always exists and cannot be deleted")
            if state["active_stack"] == name:
                raise StackmagicError(
                    f"stack {name!r} is active; activate another first (`stackmagic stack set default`)"
                )
            del state["stacks"][name]

    @contextmanager
    def _storing_secrets(
        self, kind: ComponentType, name: str, config: FlavorConfig, previous: Mapping[str, str]
    ) -> Iterator[None]:
        """Swap newly given secret values for references; drop them again if the change fails."""
        added = []
        for option, value in config.secret_references().items():
            if previous.get(option) == value:
                continue
            reference = self.secrets.put(
                value, f"{kind.value} {name} --{option} in {self.directory}"
            )
            if reference != value:
                added.append(reference)
                setattr(config, option, reference)
        try:
            yield
        except BaseException:
            self.secrets.discard(added)
            raise

    def _check_stack(self, state: Mapping[str, Any], name: str) -> None:
        """Refuse a stack whose components are missing or cannot work together."""
        entry = state["stacks"][name]
        members: dict[ComponentType, FlavorConfig] = {}
        for kind in STACK_FLAGS:  # in the order users type them
            member = entry.get(kind.value)
            if member is None:
                if kind in REQUIRED_IN_STACK:
                    raise StackmagicError(
                        f"stack {name!r} has no {kind.noun}; give one with {STACK_FLAGS[kind]}"
                    )
                continue
            stored = component_entry(state, kind, member)
            flavor = get_flavor(kind, stored["flavor"])
            members[kind] = flavor.from_options(stored["options"], self.directory)

        for kind in (ComponentType.ORCHESTRATOR, ComponentType.STEP_OPERATOR):
            runner = members.get(kind)
            if runner is None or not runner.runs_remotely:
                continue
            tracker = members.get(ComponentType.EXPERIMENT_TRACKER)
            if tracker is not None and not tracker.is_remote:
                raise StackmagicError(
                    f"stack {name!r}: {kind.noun} {entry[kind.value]!r} ({runner.flavor}) runs "
                    f"steps off this machine, where the {tracker.flavor} experiment tracker "
                    f"{entry[ComponentType.EXPERIMENT_TRACKER.value]!r} cannot be reached (it "
                    "keeps runs on this machine); point it at a tracking server "
                    f"(`stackmagic experiment-tracker update ...`) or drop it from the stack"
                )
            for store_kind in (ComponentType.ARTIFACT_STORE, ComponentType.METADATA_STORE):
                store = members[store_kind]
                if store.is_remote:
                    continue
                remote = [flavor for flavor, cls in flavors_of(store_kind).items() if cls.is_remote]
                choices = (
                    ", ".join(remote[:-1]) + f" or {remote[-1]}" if len(remote) > 1 else remote[0]
                )
                raise StackmagicError(
                    f"stack {name!r}: {kind.noun} {entry[kind.value]!r} ({runner.flavor}) runs steps "
                    f"off this machine, where the {store.flavor} {store_kind.noun} "
                    f"{entry[store_kind.value]!r} cannot be reached; register a "
                    f"{choices} {store_kind.noun} for {STACK_FLAGS[store_kind]}"
                )


def _stack(name: str, entry: Mapping[str, str]) -> Stack:
    return Stack(name, {ComponentType(kind): member for kind, member in entry.items()})
