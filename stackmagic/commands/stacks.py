"""Stacks: register, update, activate, list, describe and delete them."""

from __future__ import annotations

import argparse
import os
from typing import Any

from ..errors import UsageError
from ..flavors import ComponentType
from ..output import Fields, Message, Output, Table
from ..registry import STACK_ENV, Registry, Stack
from .components import component_data, component_fields


def stack_register(args: argparse.Namespace) -> Output:
    stack = Registry.open().register_stack(args.name, _members(args))
    return Message(
        f"Registered stack {stack.name!r}; activate it with `stackmagic stack set {stack.name}`.",
        _stack_data(stack, active=False),
    )


def stack_update(args: argparse.Namespace) -> Output:
    changes: dict[ComponentType, str | None] = dict(_members(args))
    for kind, flag, removing in (
        (ComponentType.STEP_OPERATOR, "-s", args.no_step_operator),
        (ComponentType.EXPERIMENT_TRACKER, "-e", args.no_experiment_tracker),
    ):
        if removing and kind in changes:
            raise UsageError(
                f"{flag} and --no-{kind.value} contradict each other: give one", "stack update"
            )
        if removing:
            changes[kind] = None
    registry = Registry.open()
    active = registry.active_stack_name()  # a bad STACKMAGIC_STACK fails before anything is written
    stack = registry.update_stack(args.name, changes)
    return Message(
        f"Updated stack {stack.name!r}.", _stack_data(stack, active=stack.name == active)
    )


def stack_set(args: argparse.Namespace) -> Output:
    registry = Registry.open()
    effective = (
        registry.active_stack_name()
    )  # a bad STACKMAGIC_STACK fails before anything is written
    stack = registry.set_active_stack(args.name)
    message = f"Active stack: {stack.name}"
    if os.environ.get(STACK_ENV) and effective != stack.name:
        message += f" (but {STACK_ENV}={effective} overrides it in this process)"
    return Message(message, _stack_data(stack, active=True))


def stack_get(args: argparse.Namespace) -> Output:
    registry = Registry.open()
    name = registry.active_stack_name()
    source = STACK_ENV if name != registry.stored_active_stack() else str(registry.directory)
    return Message(
        name, {"active_stack": name, "source": source, "registry": str(registry.directory)}
    )


def stack_list(args: argparse.Namespace) -> Output:
    return stacks_table(Registry.open())


def stacks_table(registry: Registry) -> Table:
    active = registry.active_stack_name()
    stacks = registry.stacks()
    kinds = [  # a tracker's column where a stack has one: most stacks have none
        kind
        for kind in ComponentType
        if kind != ComponentType.EXPERIMENT_TRACKER or any(kind in s.components for s in stacks)
    ]
    return Table(
        title="Stacks",
        columns=["stack", *(kind.noun for kind in kinds)],
        rows=[[s.name, *(s.components.get(kind, "-") for kind in kinds)] for s in stacks],
        highlight=frozenset(i for i, s in enumerate(stacks) if s.name == active),
        data=[_stack_data(s, active=s.name == active) for s in stacks],
    )


def stack_describe(args: argparse.Namespace) -> Output:
    registry = Registry.open()
    active = registry.active_stack_name()
    stack = registry.stack(args.name or active)
    components = [registry.component(kind, name) for kind, name in _ordered(stack)]
    title = f"Stack {stack.name}" + (" (active)" if stack.name == active else "")
    return Fields(
        title,
        [],
        {
            **_stack_data(stack, active=stack.name == active),
            "components": [component_data(c) for c in components],
        },
        [component_fields(c) for c in components],
    )


def stack_delete(args: argparse.Namespace) -> Output:
    Registry.open().delete_stack(args.name)
    return Message(
        f"Deleted stack {args.name!r} (its components are kept).", {"deleted": args.name}
    )


def _members(args: argparse.Namespace) -> dict[ComponentType, str]:
    given = {
        ComponentType.METADATA_STORE: args.metadata_store,
        ComponentType.ARTIFACT_STORE: args.artifact_store,
        ComponentType.ORCHESTRATOR: args.orchestrator,
        ComponentType.STEP_OPERATOR: args.step_operator,
        ComponentType.EXPERIMENT_TRACKER: args.experiment_tracker,
    }
    return {kind: name for kind, name in given.items() if name is not None}


def _ordered(stack: Stack) -> list[tuple[ComponentType, str]]:
    return [(kind, stack.components[kind]) for kind in ComponentType if kind in stack.components]


def _stack_data(stack: Stack, *, active: bool) -> dict[str, Any]:
    return {
        "name": stack.name,
        "active": active,
        "components": {kind.value: name for kind, name in _ordered(stack)},
    }
