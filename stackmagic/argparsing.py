"""argparse that reports mistakes as :class:`UsageError` instead of exiting.

Every grammar of stackmagic (the commands, ``%%step``) is built on it, so a
typo in a kernel raises one clear error and the kernel lives on. A word that is
not one of the choices (a command, an action, a flavor) is answered with the
nearest choice, if one is near: ``stak`` gets "did you mean 'stack'?".
"""

from __future__ import annotations

import argparse
import difflib
import functools
from collections.abc import Callable, Iterable, Iterator
from typing import Any, NoReturn

from .errors import UsageError


class HelpShown(Exception):
    """``--help`` or ``--version`` printed what was asked; nothing more to do."""


class Choices:
    """Choices found when first asked for, and named in the error for a word that is none of them.

    The flavors of a component type come from installed packages' entry points: reading them
    costs every command time, so they are read only to check a word, list them in ``--help``
    or complete one. ``what`` names a choice ("artifact store flavor") and ``plural`` them.
    """

    def __init__(self, names: Callable[[], Iterable[str]], what: str, plural: str) -> None:
        self._names = names
        self.what = what
        self.plural = plural

    @functools.cached_property
    def names(self) -> list[str]:
        return list(self._names())

    def __iter__(self) -> Iterator[str]:
        return iter(self.names)

    def __contains__(self, word: object) -> bool:
        return word in self.names


class Parser(argparse.ArgumentParser):
    """Raises instead of printing usage and exiting, so a kernel survives a typo."""

    def __init__(self, *args: Any, command: str = "", **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)
        self.command = command

    def add_argument(self, *args: Any, **kwargs: Any) -> argparse.Action:
        """A NAME, path or option value given as an empty word is refused, never taken for
        "not given" (``stack describe ''`` would describe the active stack)."""
        if (
            kwargs.get("action", "store") == "store"
            and kwargs.get("nargs") in (None, "?")
            and kwargs.get("default") != ""
        ):
            kwargs["type"] = _not_empty(kwargs.get("type", str))
        return super().add_argument(*args, **kwargs)

    def _check_value(self, action: argparse.Action, value: Any) -> None:
        """A word that is none of the choices: the nearest one, if a choice is near."""
        choices = action.choices
        if choices is None or value in choices:
            return
        names = [str(choice) for choice in choices]
        near = nearest(str(value), names)
        guess = f"; did you mean {near!r}?" if near else ""
        if isinstance(choices, Choices):
            listed = f"valid {choices.plural}: {', '.join(names)}"
            raise UsageError(
                f"unknown {choices.what} {value!r}"
                + (f"{guess} ({listed})" if near else f"; {listed}"),
                self.command,
            )
        listed = "" if near else f" (choose from {', '.join(map(repr, names))})"
        raise argparse.ArgumentError(action, f"invalid choice: {value!r}{guess}{listed}")

    def error(self, message: str) -> NoReturn:
        raise UsageError(message, self.command)

    def exit(self, status: int = 0, message: str | None = None) -> NoReturn:
        if message:
            print(message, end="")
        raise HelpShown()


def nearest(word: str, names: list[str]) -> str | None:
    """The one name close enough to ``word`` to be what was meant, if any."""
    close = difflib.get_close_matches(word, names, n=1, cutoff=0.6)
    return close[0] if close else None


def _not_empty(convert: Callable[[str], Any]) -> Callable[[str], Any]:
    @functools.wraps(convert)
    def checked(text: str) -> Any:
        if not text:
            raise argparse.ArgumentTypeError("cannot be empty")
        return convert(text)

    return checked
