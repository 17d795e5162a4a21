"""Components: register, update, delete, list and describe them, and the flavors of a type."""

from __future__ import annotations

import argparse
import getpass
from pathlib import Path
from typing import Any

from ..errors import StackmagicError
from ..flavors import ComponentType, FlavorConfig, flavors_of, format_value, get_flavor, option_flag
from ..output import Fields, Message, Output, Table
from ..registry import PROJECT_START, Component, Registry
from ..secrets import PROMPT, refuse_if_typed_in_cell


def component_register(args: argparse.Namespace) -> Output:
    kind: ComponentType = args.kind
    flavor = get_flavor(kind, args.flavor)
    options = _ask_for_secrets(kind, flavor, args.name, args.options)
    component = Registry.open().register_component(kind, args.name, args.flavor, options, _here())
    return Message(
        f"Registered {kind.noun} {component.name!r} ({component.flavor}).",
        component_data(component),
    )


def component_update(args: argparse.Namespace) -> Output:
    registry = Registry.open()
    kind: ComponentType = args.kind
    flavor = type(registry.component(kind, args.name).config)
    options = _ask_for_secrets(kind, flavor, args.name, args.options)
    component = registry.update_component(kind, args.name, options, _here())
    return Message(f"Updated {kind.noun} {component.name!r}.", component_data(component))


def component_delete(args: argparse.Namespace) -> Output:
    Registry.open().delete_component(args.kind, args.name)
    return Message(f"Deleted {args.kind.noun} {args.name!r}.", {"deleted": args.name})


def component_list(args: argparse.Namespace) -> Output:
    kind: ComponentType = args.kind
    registry = Registry.open()
    in_active = registry.stack(registry.active_stack_name()).components.get(kind)
    components = registry.components(kind)
    users = _stacks_using(registry, kind)
    return Table(
        title=kind.noun.capitalize() + "s",
        columns=["name", "flavor", "used by", "settings"],
        rows=[
            [c.name, c.flavor, ", ".join(users.get(c.name, [])) or "-", _settings_line(c)]
            for c in components
        ],
        highlight=frozenset(i for i, c in enumerate(components) if c.name == in_active),
        data=[{**component_data(c), "used_by": users.get(c.name, [])} for c in components],
    )


def component_describe(args: argparse.Namespace) -> Output:
    registry = Registry.open()
    component = registry.component(args.kind, args.name)
    used_by = _stacks_using(registry, args.kind).get(component.name, [])
    return component_fields(component, used_by)


def component_flavors(args: argparse.Namespace) -> Output:
    kind: ComponentType = args.kind
    flavors = flavors_of(kind)
    parts = [
        Fields(
            f"{name} ({flavor.summary().rstrip('.')})",
            [(_option_synopsis(option), option["help"]) for option in flavor.schema()["options"]]
            or [("(no options)", "")],
            stacked=True,
        )
        for name, flavor in flavors.items()
    ]
    return Fields(
        f"{kind.noun.capitalize()} flavors (register with --type=FLAVOR)",
        [],
        [flavor.schema() for flavor in flavors.values()],
        parts,
    )


def _here() -> Path:
    """Where relative paths given in a command start: the working directory, or the folder a
    Jupyter server serves (its requests run commands without changing directory)."""
    return PROJECT_START.get() or Path.cwd()


def _ask_for_secrets(
    kind: ComponentType, flavor: type[FlavorConfig], name: str, options: dict[str, str | None]
) -> dict[str, str | None]:
    """``--password=-`` asks for the value instead of taking it from the command line."""
    secret = {option for option, trait in flavor.options().items() if trait.metadata.get("secret")}
    answered = dict(options)
    for option, value in options.items():
        key = option.replace("-", "_")
        if key not in secret or value is None:
            continue
        flag = option_flag(key)
        refuse_if_typed_in_cell(flag, value, kind.value)
        if value != PROMPT:
            continue
        try:
            answered[option] = getpass.getpass(f"{flag} for {name}: ")
        except (EOFError, NotImplementedError):  # no terminal, or a kernel without stdin
            raise StackmagicError(
                f"cannot ask for {flag} here (no terminal to type it in); give {flag}=env:VARIABLE"
            ) from None
        if not answered[option]:
            raise StackmagicError(f"nothing was typed for {flag}; nothing changed")
    return answered


def _stacks_using(registry: Registry, kind: ComponentType) -> dict[str, list[str]]:
    users: dict[str, list[str]] = {}
    for stack in registry.stacks():
        if kind in stack.components:
            users.setdefault(stack.components[kind], []).append(stack.name)
    return users


def component_data(component: Component) -> dict[str, Any]:
    return {
        "type": component.type.value,
        "name": component.name,
        "flavor": component.flavor,
        "options": component.config.shown(),
    }


def _settings_line(component: Component) -> str:
    shown = component.config.shown()
    given = {k: v for k, v in shown.items() if v not in ("", [], {}, None)}
    return ", ".join(f"{option_flag(k)[2:]}={format_value(v)}" for k, v in given.items()) or "-"


def component_fields(component: Component, used_by: list[str] | None = None) -> Fields:
    fields = [("flavor", f"{component.flavor} ({type(component.config).summary()})")]
    if used_by is not None:
        fields.append(("used by", ", ".join(used_by) or "no stack"))
    fields += [
        (option_flag(k), format_value(v) or "-") for k, v in component.config.shown().items()
    ]
    data = component_data(component)
    if used_by is not None:
        data["used_by"] = used_by
    return Fields(f"{component.type.noun.capitalize()} {component.name}", fields, data)


def _option_synopsis(option: dict[str, Any]) -> str:
    placeholder = {
        "boolean": "true|false",
        "integer": "N",
        "number": "X",
        "mapping": "K=V,...",
    }.get(option["kind"], "|".join(option.get("choices", [])) or "TEXT")
    if option["secret"]:
        placeholder = f"{placeholder}|env:VARIABLE|{PROMPT}"
    notes = [note for note in ("required", "secret") if option[note]]
    if option["default"] not in ("", None, [], {}):
        notes.append(f"default {format_value(option['default'])}")
    return f"--{option['name']}={placeholder}" + (f" ({', '.join(notes)})" if notes else "")
