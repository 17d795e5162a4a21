"""argparse that reports mistakes as :class:`UsageError` instead of exiting.

Every grammar of stackmagic (the commands, ``%%step``) is built on it, so a
typo in a kernel raises one clear error and the kernel lives on.
"""

from __future__ import annotations

import argparse
import functools
from collections.abc import Callable
from typing import Any, NoReturn

from .errors import UsageError


class HelpShown(Exception):
    """``--help`` or ``--version`` printed what was asked; nothing more to do."""


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

    def error(self, message: str) -> NoReturn:
        raise UsageError(message, self.command)

    def exit(self, status: int = 0, message: str | None = None) -> NoReturn:
        if message:
            print(message, end="")
        raise HelpShown()


def _not_empty(convert: Callable[[str], Any]) -> Callable[[str], Any]:
    @functools.wraps(convert)
    def checked(text: str) -> Any:
        if not text:
            raise argparse.ArgumentTypeError("cannot be empty")
        return convert(text)

    return checked
