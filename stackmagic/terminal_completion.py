"""Shell completion of ``stackmagic`` words, through argcomplete.

After ``eval "$(register-python-argcomplete stackmagic)"``, the shell runs the
command with ``_ARGCOMPLETE`` set for each Tab; :func:`complete` answers with
the commands, options and flavors the parser knows, and the names of the stacks
and components this project's registry holds. The grammar stays in the parser:
here each argument is matched to what names it by its place and its name.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import argcomplete
from argcomplete.completers import BaseCompleter, FilesCompleter

from .argparsing import Parser
from .component_type import ComponentType
from .errors import StackmagicError

Completer = Callable[..., Iterable[str]]

#: Actions whose NAME is one that exists (``register`` names a new one).
_NAMING_EXISTING = ("set", "describe", "update", "delete")


def complete() -> None:
    """Write the completions of the shell's word (argcomplete exits the process after)."""
    from .parser import build_parser

    parser = build_parser()
    for sub in _parsers(parser):
        for action in sub._actions:
            completer = _completer_for(sub, action)
            if completer is None and action.dest == "notebook":
                completer = FilesCompleter(allowednames=("ipynb",))
            if completer is not None:
                setattr(action, "completer", completer)  # noqa: B010 - argcomplete reads it
    argcomplete.autocomplete(parser, default_completer=_Nothing())


def _parsers(parser: argparse.ArgumentParser) -> Iterator[Parser]:
    """``parser`` and every sub-command's parser under it."""
    if isinstance(parser, Parser):
        yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in dict.fromkeys(action.choices.values()):  # aliases share a parser
                yield from _parsers(sub)


def _completer_for(parser: Parser, action: argparse.Action) -> Completer | None:
    """What a word of this argument can be, if the registry knows: stacks or components."""
    noun, _, verb = parser.command.partition(" ")
    if action.dest == "stack" or (
        noun == "stack" and verb in _NAMING_EXISTING and action.dest == "name"
    ):
        return _stacks
    if action.dest in {kind.value.replace("-", "_") for kind in ComponentType}:
        return _components(ComponentType(action.dest.replace("_", "-")))
    if action.dest == "name" and verb in _NAMING_EXISTING and noun in set(ComponentType):
        return _components(ComponentType(noun))
    if action.dest in ("run_id", "run_ids"):
        return lambda **_: ["latest"]
    return None


def _stacks(**_: Any) -> list[str]:
    return _registry_names(lambda registry: [stack.name for stack in registry.stacks()])


def _components(kind: ComponentType) -> Completer:
    def names(**_: Any) -> list[str]:
        return _registry_names(lambda registry: [c.name for c in registry.components(kind)])

    return names


def _registry_names(read: Callable[[Any], list[str]]) -> list[str]:
    """Names from this project's registry; none if it cannot be read (Tab must not fail)."""
    from .registry import Registry

    try:
        return read(Registry.open())
    except (StackmagicError, OSError):
        return []


class _Nothing(BaseCompleter):
    """Words nothing lists (a new name, a value): no files offered in their place."""

    def __call__(self, **_: Any) -> list[str]:
        return []
