"""The command grammar: one parser for the ``stackmagic`` command and the magics.

``%stack set gcp`` in a notebook is ``stackmagic stack set gcp`` in a terminal:
both go through :func:`run`. Component options (``--path=gs://...``) depend
on the flavor, so ``register`` and ``update`` collect them after argparse has
taken the options it knows, and the flavor validates them.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from typing import Any

from . import __version__, commands
from .argparsing import Parser
from .errors import UsageError
from .flavors import ComponentType
from .output import Output

Handler = Callable[[argparse.Namespace], Output]


def build_parser() -> Parser:
    parser = Parser(
        prog="stackmagic",
        description="MLOps stacks for notebooks: components, stacks, and pipelines.",
        epilog="In a notebook, the same words work as magics after `%load_ext stackmagic`: %stack set gcp",
    )
    parser.add_argument("--version", action="version", version=f"stackmagic {__version__}")
    commands_ = parser.add_subparsers(title="commands", dest="command", metavar="COMMAND", required=True)

    _command(commands_, "init", commands.init, "make .stackmagic/ in this folder")
    _stack_commands(commands_)
    for kind in ComponentType:
        _component_commands(commands_, kind)
    _pipeline_commands(commands_)
    return parser


def _command(
    group: Any, name: str, handler: Handler | None, help_: str, *, prefix: str = "", **kwargs: Any
) -> Parser:
    """A sub-command; those with a ``handler`` are the ones that do something."""
    words = f"{prefix} {name}".strip()
    parser: Parser = group.add_parser(
        name, help=help_, description=help_[0].upper() + help_[1:] + ".", prog=f"stackmagic {words}",
        command=words, **kwargs,
    )
    if handler is not None:
        parser.set_defaults(handler=handler, takes_options=False, as_json=False)
    return parser


def _json_flag(parser: Parser) -> None:
    parser.add_argument("--json", dest="as_json", action="store_true", help="print JSON")


def _stack_commands(group: Any) -> None:
    stack = _command(group, "stack", None, "register, activate and inspect stacks")
    actions = stack.add_subparsers(title="actions", dest="action", metavar="ACTION", required=True)

    def members(parser: Parser, *, required: bool) -> None:
        parser.add_argument("-m", "--metadata-store", required=required, metavar="NAME")
        parser.add_argument("-a", "--artifact-store", required=required, metavar="NAME")
        parser.add_argument("-o", "--orchestrator", required=required, metavar="NAME")
        parser.add_argument("-s", "--step-operator", metavar="NAME")

    register = _command(actions, "register", commands.stack_register, "register a stack", prefix="stack")
    register.add_argument("name", metavar="NAME")
    members(register, required=True)

    update = _command(actions, "update", commands.stack_update, "swap components of a stack", prefix="stack")
    update.add_argument("name", metavar="NAME")
    members(update, required=False)
    update.add_argument("--no-step-operator", action="store_true", help="remove the step operator")

    set_ = _command(actions, "set", commands.stack_set, "make a stack the active one", prefix="stack")
    set_.add_argument("name", metavar="NAME")

    get = _command(actions, "get", commands.stack_get, "print the active stack's name", prefix="stack")
    _json_flag(get)
    _json_flag(_command(actions, "list", commands.stack_list, "list the stacks", prefix="stack"))

    describe = _command(
        actions, "describe", commands.stack_describe, "show a stack and its components", prefix="stack"
    )
    describe.add_argument("name", metavar="NAME", nargs="?", help="default: the active stack")
    _json_flag(describe)

    delete = _command(actions, "delete", commands.stack_delete, "delete a stack", prefix="stack")
    delete.add_argument("name", metavar="NAME")


def _component_commands(group: Any, kind: ComponentType) -> None:
    noun = kind.noun
    top = _command(group, kind.value, None, f"manage {noun}s")
    actions = top.add_subparsers(title="actions", dest="action", metavar="ACTION", required=True)
    options_help = f"flavor options, --KEY=VALUE (see `stackmagic {kind.value} flavors`)"

    register = _command(
        actions, "register", commands.component_register, f"register a {noun}", prefix=kind.value,
        epilog=options_help,
    )
    register.add_argument("name", metavar="NAME")
    register.add_argument("--type", "--flavor", dest="flavor", required=True, metavar="FLAVOR")
    register.set_defaults(takes_options=True)

    _json_flag(_command(actions, "list", commands.component_list, f"list the {noun}s", prefix=kind.value))

    describe = _command(
        actions, "describe", commands.component_describe, f"show a {noun}'s settings", prefix=kind.value
    )
    describe.add_argument("name", metavar="NAME")
    _json_flag(describe)

    update = _command(
        actions, "update", commands.component_update, f"change a {noun}'s options", prefix=kind.value,
        epilog=options_help,
    )
    update.add_argument("name", metavar="NAME")
    update.set_defaults(takes_options=True)

    delete = _command(actions, "delete", commands.component_delete, f"delete a {noun}", prefix=kind.value)
    delete.add_argument("name", metavar="NAME")

    flavors = _command(
        actions, "flavors", commands.component_flavors, f"list the {noun} flavors and their options",
        prefix=kind.value,
    )
    _json_flag(flavors)
    top.set_defaults(kind=kind)


def _pipeline_commands(group: Any) -> None:
    top = _command(group, "pipeline", None, "inspect notebook pipelines")
    actions = top.add_subparsers(title="actions", dest="action", metavar="ACTION", required=True)
    show = _command(
        actions, "show", commands.pipeline_show, "show a notebook's steps, their inputs and outputs, "
        "and the DAG", prefix="pipeline",
    )
    show.add_argument("notebook", metavar="NOTEBOOK", nargs="?",
                      help="the .ipynb file; in a notebook, default: this notebook (saved)")
    _json_flag(show)


def parse(argv: Sequence[str]) -> argparse.Namespace:
    parser = build_parser()
    args, extra = parser.parse_known_args(list(argv))
    command = f"{args.command} {getattr(args, 'action', '')}".strip()
    args.command_words = command
    if args.takes_options:
        args.options = _flavor_options(extra, command)
    elif extra:
        raise UsageError(f"unrecognized arguments: {' '.join(extra)}", command)
    return args


def run(argv: Sequence[str]) -> tuple[Output, bool]:
    """Parse and carry out one command; returns its output and whether JSON was asked for."""
    args = parse(argv)
    return args.handler(args), args.as_json


def _flavor_options(tokens: list[str], command: str) -> dict[str, str | None]:
    """``--key=value`` and ``--key value`` into a dict; a bare ``--flag`` maps to None.

    Only the flavor knows whether a bare flag makes sense (a boolean is then true).
    """
    options: dict[str, str | None] = {}
    position = 0
    while position < len(tokens):
        token = tokens[position]
        if not token.startswith("--") or token == "--":
            raise UsageError(
                f"unexpected argument {token!r}: flavor options look like --key=value", command
            )
        key, has_value, given = token[2:].partition("=")
        value: str | None = given
        if not has_value:
            following = tokens[position + 1] if position + 1 < len(tokens) else None
            if following is not None and not following.startswith("--"):
                value = following
                position += 1
            else:
                value = None
        normalised = key.replace("_", "-")
        if normalised in options:
            raise UsageError(f"--{normalised} is given twice", command)
        options[normalised] = value
        position += 1
    return options
