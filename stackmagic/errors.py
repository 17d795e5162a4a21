"""Errors a user can act on.

Anything raised as :class:`StackmagicError` is shown as one line (exit code 2
in a terminal, ``UsageError`` in IPython), never as a traceback.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .output import Output


class StackmagicError(Exception):
    """A mistake the user can fix; the message says what is wrong and what to do.

    Its text is always one line: a name or path the user typed with a line break or
    another control character in it is shown escaped, so no error spills onto a second line.
    """

    def __str__(self) -> str:
        return one_line(super().__str__())


class UsageError(StackmagicError):
    """The command line itself is wrong (unknown command, missing argument...).

    ``command`` is the words of the sub-command (``"stack register"``) so the
    terminal and the magics can each name it, and point to its help, in their
    own style.
    """

    def __init__(self, message: str, command: str = "") -> None:
        super().__init__(message)
        self.command = command


class NotFound(StackmagicError):
    """What the command names does not exist (a stack, a component, a run): HTTP 404."""


class RunFailed(StackmagicError):
    """A run or step that ended in failure: not a usage mistake (exit code 1, not 2).

    ``output`` is what to show before the error line: the steps and how each ended.
    """

    def __init__(self, message: str, output: Output | None = None) -> None:
        super().__init__(message)
        self.output = output
        self.as_json = False


def describe_os_error(error: OSError) -> str:
    """One line for a failed file operation, without a traceback."""
    where = f": {error.filename}" if error.filename else ""
    return one_line(
        f"{error.strerror or error}{where}; check that the folder exists and is writable"
    )


def one_line(text: str) -> str:
    """``text`` with each unprintable character (a line break, a tab, NUL...) escaped as repr does."""
    if text.isprintable():
        return text
    return "".join(
        character if character.isprintable() else repr(character)[1:-1] for character in text
    )
