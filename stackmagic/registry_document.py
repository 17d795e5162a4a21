"""The registry's document, ``config.json``: what a new one holds and the shape every one has.

Names and entries are looked up here with errors a user can act on; a document
a hand edit broke is found here before anything reads or writes it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from .argparsing import nearest
from .errors import NotFound, StackmagicError
from .flavors import ComponentType

SCHEMA_VERSION = 1
DEFAULT = "default"
#: Component and stack names: they become folder names and command-line words.
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,62}$")

REQUIRED_IN_STACK = (
    ComponentType.ARTIFACT_STORE,
    ComponentType.METADATA_STORE,
    ComponentType.ORCHESTRATOR,
)


def fresh_state() -> dict[str, Any]:
    """A new project's registry: the default stores and orchestrator, the default stack active."""
    return {
        "version": SCHEMA_VERSION,
        "active_stack": DEFAULT,
        "components": {
            ComponentType.ARTIFACT_STORE.value: {DEFAULT: {"flavor": "local", "options": {}}},
            ComponentType.METADATA_STORE.value: {DEFAULT: {"flavor": "sqlite", "options": {}}},
            ComponentType.ORCHESTRATOR.value: {DEFAULT: {"flavor": "local", "options": {}}},
        },
        "stacks": {DEFAULT: {kind.value: DEFAULT for kind in REQUIRED_IN_STACK}},
    }


def check_name(name: str, what: str) -> None:
    """Refuse a name a new component or stack cannot have."""
    if not _NAME.fullmatch(name):
        raise StackmagicError(
            f"invalid {what} name {name!r}: use up to 63 letters, digits, '-', '_' or '.', "
            "starting with a letter"
        )


def malformed(state: Mapping[str, Any]) -> list[str]:
    """The parts of the document without the shape the registry reads (``stacks.prod``...)."""
    shapes = {"active_stack": str, "components": dict, "stacks": dict}
    damaged = [key for key, shape in shapes.items() if not isinstance(state.get(key), shape)]
    if damaged:
        return damaged
    kinds = {kind.value for kind in ComponentType}
    for kind, entries in state["components"].items():
        if kind not in kinds or not isinstance(entries, dict):
            damaged.append(f"components.{kind}")
            continue
        damaged += [
            f"components.{kind}.{name}"
            for name, entry in entries.items()
            if not (
                isinstance(entry, dict)
                and isinstance(entry.get("flavor"), str)
                and isinstance(entry.get("options"), dict)
            )
        ]
    damaged += [
        f"stacks.{name}"
        for name, entry in state["stacks"].items()
        if not (
            isinstance(entry, dict)
            and set(entry) <= kinds
            and all(isinstance(member, str) for member in entry.values())
        )
    ]
    return damaged


def refuse_case_twin(existing: Mapping[str, Any], name: str, what: str) -> None:
    """Names differing only in case would be one on a case-insensitive disk, and confuse people."""
    twin = next((other for other in existing if other.lower() == name.lower()), None)
    if twin is not None:
        raise StackmagicError(
            f"{what} {name!r} differs from the existing {what} {twin!r} only in case; names are "
            f"unique whatever their case: use {twin!r} or pick another name"
        )


def component_entry(state: Mapping[str, Any], kind: ComponentType, name: str) -> dict[str, Any]:
    """A component's entry; a missing one is an error that says how to register it."""
    entries = state["components"].get(kind.value, {})
    if name not in entries:
        raise NotFound(
            _missing(
                kind.noun,
                name,
                sorted(entries),
                f"`stackmagic {kind.value} register {name} --type=FLAVOR`",
            )
        )
    return entries[name]


def stack_entry(state: Mapping[str, Any], name: str) -> dict[str, Any]:
    """A stack's entry; a missing one is an error that says how to register it."""
    if name not in state["stacks"]:
        raise NotFound(
            _missing(
                "stack",
                name,
                sorted(state["stacks"]),
                f"`stackmagic stack register {name} -m METADATA_STORE -a ARTIFACT_STORE "
                "-o ORCHESTRATOR`",
            )
        )
    return state["stacks"][name]


def _missing(noun: str, name: str, registered: list[str], register: str) -> str:
    """No such entry: the registered name it is a typo of, else how to register it."""
    known = ", ".join(registered) or "none"
    near = nearest(name, registered)
    if near:
        return f"no {noun} named {name!r}; did you mean {near!r}? (registered: {known})"
    return f"no {noun} named {name!r} (registered: {known}); register it with {register}"
