"""What the ``stackmagic`` command writes, and where: colour on a screen, plain text elsewhere.

A screen gets rich's tables and colours; a pipe, a file, ``NO_COLOR`` (set and
not empty, as no-color.org says) or ``TERM=dumb`` get the plain text, with no escape code. A reader that
stops reading (``| head -1``) or a log that is gone never stops the command:
what cannot be written is dropped, and a run goes on to its end and is recorded
as it ended.
"""

from __future__ import annotations

import contextlib
import errno
import os
import sys
from collections.abc import Iterator
from typing import IO, TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from rich.console import Console

    from .output import Output


def shows_colour(stream: IO[str]) -> bool:
    """Whether ``stream`` is a screen that should get colour and live displays."""
    if os.environ.get("NO_COLOR") or os.environ.get("TERM") == "dumb":
        return False
    try:
        return stream.isatty()
    except ValueError:  # closed
        return False


def console(stream: TextIO) -> Console:
    """A rich console that writes to ``stream`` (imported here: only screens pay for rich)."""
    from rich.console import Console

    return Console(file=stream, highlight=False, soft_wrap=False)


def show(output: Output, as_json: bool, stream: TextIO | None = None) -> None:
    """Print a command's output: JSON when asked, rich on a screen, else its plain text."""
    stream = stream or sys.stdout
    if as_json:
        print(output.to_json(), file=stream)
    elif shows_colour(stream):
        _print_unwrapped(console(stream), output)
    else:
        print(output.text(), file=stream)


def _print_unwrapped(screen: Console, output: Output) -> None:
    """As wide as the output is: a table wider than the screen wraps at the screen's edge,
    as the plain text does, rather than fold each cell (a path) into a column of pieces."""
    from rich.measure import Measurement

    natural = Measurement.get(screen, screen.options.update(max_width=10_000), output).maximum
    screen.width = max(screen.width, natural)
    screen.print(output, crop=False)


def error_line(text: str, stream: TextIO | None = None) -> None:
    """``prog: error: ...`` on stderr, its ``error`` red on a screen."""
    stream = stream or sys.stderr
    if shows_colour(stream):
        text = text.replace("error:", "\x1b[1;31merror:\x1b[0m", 1)
    print(text, file=stream, flush=True)


class PipeSafe:
    """A text stream whose writes are dropped once its reader has gone, instead of raising.

    Python ignores SIGPIPE, so a write to a pipe nobody reads raises BrokenPipeError: in a
    progress line it would end the run it reports on. Once that happens, the file descriptor
    is pointed at the null device, so the interpreter's last flush at exit is quiet too.
    """

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.gone = False

    def write(self, text: str) -> int:
        if not self.gone:
            with self._dropping_when_gone():
                return self.stream.write(text)
        return len(text)

    def flush(self) -> None:
        if not self.gone:
            with self._dropping_when_gone():
                self.stream.flush()

    @contextlib.contextmanager
    def _dropping_when_gone(self) -> Iterator[None]:
        try:
            yield
        except OSError as error:
            if not isinstance(error, BrokenPipeError) and error.errno != errno.EPIPE:
                raise
            self.gone = True
            with contextlib.suppress(OSError, ValueError):
                null = os.open(os.devnull, os.O_WRONLY)
                os.dup2(null, self.stream.fileno())
                os.close(null)

    def isatty(self) -> bool:
        return not self.gone and self.stream.isatty()

    def __getattr__(self, name: str) -> Any:  # fileno, encoding, buffer...
        return getattr(self.stream, name)


def open_closed_standard_streams() -> None:
    """Standard streams closed at the start (``2>&-``) become the null device.

    Otherwise Python has no ``sys.stderr`` to write to, and the next file opened
    (the metadata store's database, a step's notebook) takes descriptor 2 and would
    receive what the command and its kernels write to their standard error.
    """
    for descriptor in (0, 1, 2):
        try:
            os.fstat(descriptor)
        except OSError:
            os.open(os.devnull, os.O_RDWR)  # the lowest free descriptor: this one
    if sys.stdout is None:
        sys.stdout = open(1, "w", closefd=False)  # noqa: SIM115 - the process's own stream
    if sys.stderr is None:
        sys.stderr = open(2, "w", closefd=False)  # noqa: SIM115 - the process's own stream


@contextlib.contextmanager
def pipe_safe_streams() -> Iterator[None]:
    """``sys.stdout`` and ``sys.stderr`` as :class:`PipeSafe` streams, for one command;
    flushed at its end, while a reader that has gone can still be told from a failure."""
    open_closed_standard_streams()
    saved = sys.stdout, sys.stderr
    safe = PipeSafe(sys.stdout), PipeSafe(sys.stderr)
    sys.stdout, sys.stderr = safe
    try:
        yield
    finally:
        for stream in safe:
            stream.flush()
        sys.stdout, sys.stderr = saved
