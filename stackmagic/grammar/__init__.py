"""The words of the command grammar, by noun; :mod:`stackmagic.parser` assembles them."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from ..argparsing import Parser
from ..output import Output

Handler = Callable[[argparse.Namespace], Output]


def command(
    group: Any, name: str, handler: Handler | None, help_: str, *, prefix: str = "", **kwargs: Any
) -> Parser:
    """A sub-command; those with a ``handler`` are the ones that do something."""
    words = f"{prefix} {name}".strip()
    parser: Parser = group.add_parser(
        name,
        help=help_,
        description=help_[0].upper() + help_[1:] + ".",
        prog=f"stackmagic {words}",
        command=words,
        **kwargs,
    )
    if handler is not None:
        parser.set_defaults(handler=handler, as_json=False)
    return parser


def json_flag(parser: Parser) -> None:
    parser.add_argument("--json", dest="as_json", action="store_true", help="print JSON")


def parameter_option(parser: Parser, help_: str) -> None:
    """``-p NAME VALUE``, once per parameter: the runs started here and by the runtime take it."""
    parser.add_argument(
        "-p",
        "--parameter",
        nargs=2,
        action="append",
        default=[],
        metavar=("NAME", "VALUE"),
        help=help_,
    )
