"""``stack`` and the component nouns (``artifact-store``, ``orchestrator``...)."""

from __future__ import annotations

from typing import Any

from .. import commands
from ..argparsing import Choices, Parser
from ..flavors import ComponentType, flavors_of
from . import Handler, command, json_flag


def stack_commands(group: Any) -> None:
    stack = command(group, "stack", None, "register, activate and inspect stacks")
    actions = stack.add_subparsers(title="actions", dest="action", metavar="ACTION", required=True)

    def members(parser: Parser, *, required: bool) -> None:
        parser.add_argument("-m", "--metadata-store", required=required, metavar="NAME")
        parser.add_argument("-a", "--artifact-store", required=required, metavar="NAME")
        parser.add_argument("-o", "--orchestrator", required=required, metavar="NAME")
        parser.add_argument("-s", "--step-operator", metavar="NAME")
        parser.add_argument("-e", "--experiment-tracker", metavar="NAME")

    register = command(
        actions, "register", commands.stack_register, "register a stack", prefix="stack"
    )
    register.add_argument("name", metavar="NAME")
    members(register, required=True)

    update = command(
        actions, "update", commands.stack_update, "swap components of a stack", prefix="stack"
    )
    update.add_argument("name", metavar="NAME")
    members(update, required=False)
    update.add_argument("--no-step-operator", action="store_true", help="remove the step operator")
    update.add_argument(
        "--no-experiment-tracker", action="store_true", help="remove the experiment tracker"
    )

    set_ = command(
        actions, "set", commands.stack_set, "make a stack the active one", prefix="stack"
    )
    set_.add_argument("name", metavar="NAME")

    get = command(
        actions, "get", commands.stack_get, "print the active stack's name", prefix="stack"
    )
    json_flag(get)
    json_flag(command(actions, "list", commands.stack_list, "list the stacks", prefix="stack"))

    describe = command(
        actions,
        "describe",
        commands.stack_describe,
        "show a stack and its components",
        prefix="stack",
    )
    describe.add_argument("name", metavar="NAME", nargs="?", help="default: the active stack")
    json_flag(describe)

    delete = command(actions, "delete", commands.stack_delete, "delete a stack", prefix="stack")
    delete.add_argument("name", metavar="NAME")


def component_commands(group: Any, kind: ComponentType) -> None:
    noun = kind.noun
    top = command(group, kind.value, None, f"manage {noun}s")
    actions = top.add_subparsers(title="actions", dest="action", metavar="ACTION", required=True)
    options_help = f"flavor options, --KEY=VALUE (see `stackmagic {kind.value} flavors`)"

    def named(name: str, handler: Handler, help_: str, **kwargs: Any) -> Parser:
        """An action on one component, by its name."""
        parser = command(actions, name, handler, help_, prefix=kind.value, **kwargs)
        parser.add_argument("name", metavar="NAME")
        return parser

    register = named(
        "register", commands.component_register, f"register {kind.a_noun}", epilog=options_help
    )
    register.add_argument(
        "--type",
        "--flavor",
        dest="flavor",
        required=True,
        metavar="FLAVOR",
        choices=Choices(lambda: flavors_of(kind), f"{noun} flavor", "flavors"),
        help="the flavor: %(choices)s",
    )

    json_flag(
        command(actions, "list", commands.component_list, f"list the {noun}s", prefix=kind.value)
    )
    json_flag(named("describe", commands.component_describe, f"show {kind.a_noun}'s settings"))
    named(
        "update",
        commands.component_update,
        f"change {kind.a_noun}'s options",
        epilog=options_help,
    )
    named("delete", commands.component_delete, f"delete {kind.a_noun}")

    flavors = command(
        actions,
        "flavors",
        commands.component_flavors,
        f"list the {noun} flavors and their options",
        prefix=kind.value,
    )
    json_flag(flavors)
    top.set_defaults(kind=kind)
