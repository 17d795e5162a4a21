"""argparse that reports mistakes as :class:`UsageError` instead of exiting.

Every grammar of stackmagic (the commands, ``%%step``) is built on it, so a
typo in a kernel raises one clear error and the kernel lives on.
"""

from __future__ import annotations

import argparse
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

    def error(self, message: str) -> NoReturn:
        raise UsageError(message, self.command)

    def exit(self, status: int = 0, message: str | None = None) -> NoReturn:
        if message:
            print(message, end="")
        raise HelpShown()
