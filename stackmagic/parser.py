"""The command grammar: one parser for the ``stackmagic`` command and the magics.

``%stack set gcp`` in a notebook is ``stackmagic stack set gcp`` in a terminal:
both go through :func:`run`. Component options (``--path=gs://...``) depend
on the flavor, so ``register`` and ``update`` collect them after argparse has
taken the options it knows, and the flavor validates them.
"""

from __future__ import annotations

import argparse
import functools
from collections.abc import Sequence

from . import __version__, commands
from .argparsing import Parser
from .errors import RunFailed, UsageError
from .flavors import ComponentType
from .grammar import command
from .grammar.pipelines import pipeline_commands
from .grammar.stacks import component_commands, stack_commands
from .grammar.upkeep import gc_command, image_commands
from .output import Output


@functools.cache
def build_parser() -> Parser:
    """Built once a process: parsing leaves it as it was, and building it costs ~15 ms
    (argparse's gettext lookups), which a server answering the sidebar every second feels."""
    parser = Parser(
        prog="stackmagic",
        description="MLOps stacks for notebooks: components, stacks, and pipelines.",
        epilog="In a notebook, the same words work as magics after `%load_ext stackmagic`: %stack set gcp",
    )
    parser.add_argument("--version", action="version", version=f"stackmagic {__version__}")
    commands_ = parser.add_subparsers(
        title="commands", dest="command", metavar="COMMAND", required=True
    )

    command(commands_, "init", commands.init, "make .stackmagic/ in this folder")
    stack_commands(commands_)
    for kind in ComponentType:
        component_commands(commands_, kind)
    pipeline_commands(commands_)
    image_commands(commands_)
    gc_command(commands_)
    return parser


def parse(argv: Sequence[str]) -> argparse.Namespace:
    words = list(argv)
    options: dict[str, str | None] | None = None
    if len(words) >= 2 and words[0] in _COMPONENT_COMMANDS and words[1] in _FLAVOR_OPTION_ACTIONS:
        own, options = _split_flavor_options(words[2:], f"{words[0]} {words[1]}")
        words = [*words[:2], *own]
    args = build_parser().parse_args(words)
    args.command_words = f"{args.command} {getattr(args, 'action', '')}".strip()
    if options is not None:
        args.options = options
    return args


def run(argv: Sequence[str]) -> tuple[Output, bool]:
    """Parse and carry out one command; returns its output and whether JSON was asked for."""
    args = parse(argv)
    try:
        return args.handler(args), args.as_json
    except RunFailed as failure:
        failure.as_json = args.as_json  # the failed run is shown the way the command asked
        raise


_COMPONENT_COMMANDS = frozenset(kind.value for kind in ComponentType)
#: Actions that take flavor options, and the options argparse itself knows there.
_FLAVOR_OPTION_ACTIONS = {"register": {"--type", "--flavor"}, "update": set()}


def _split_flavor_options(
    tokens: list[str], command: str
) -> tuple[list[str], dict[str, str | None]]:
    """Take ``--key=value`` / ``--key value`` flavor options out before argparse sees the rest.

    Doing it first means an option's value can never be mistaken for NAME (which
    could print a password as a component name). A bare ``--flag`` maps to None:
    only the flavor knows whether that makes sense (a boolean is then true).
    """
    own_options = _FLAVOR_OPTION_ACTIONS[command.split()[1]]
    own: list[str] = []
    options: dict[str, str | None] = {}
    have_name = False
    position = 0
    while position < len(tokens):
        token = tokens[position]
        following = tokens[position + 1] if position + 1 < len(tokens) else None
        position += 1
        if token in ("-h", "--help"):
            own.append(token)
            continue
        if not token.startswith("-"):
            if have_name:  # never echoed: it may be the tail of a secret with a space in it
                raise UsageError(
                    "an extra word after the options; quote a value that contains spaces "
                    "(--key='a b')",
                    command,
                )
            own.append(token)
            have_name = True
            continue
        if not token.startswith("--"):
            raise UsageError(
                f"unknown option {token}: flavor options look like --key=value", command
            )
        key, has_value, given = token[2:].partition("=")
        if not key:
            raise UsageError("an option name is missing before '=': write --key=value", command)
        if "--" + key in own_options:
            own.append(token)
            if not has_value and following is not None:
                own.append(following)
                position += 1
            continue
        if key in ("type", "flavor"):
            raise UsageError(
                "the flavor of a component cannot change: delete it and register it again", command
            )
        value: str | None = given if has_value else None
        if not has_value and following is not None and not following.startswith("--"):
            value = following
            position += 1
        normalised = key.replace("_", "-")
        if normalised in options:
            raise UsageError(f"--{normalised} is given twice", command)
        options[normalised] = value
    return own, options
