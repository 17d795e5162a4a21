"""The ``stackmagic`` command: the shared grammar, printed for a terminal."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import NoReturn

from .argparsing import HelpShown
from .errors import RunFailed, StackmagicError, UsageError, describe_os_error, one_line
from .exiting import leave_memory_to_exit
from .output import Output
from .parser import parse, run
from .registry import Registry
from .terminal import error_line, pipe_safe_streams, show, shows_colour

EXIT_USAGE = 2
EXIT_FAILED_RUN = 1


Dispatch = Callable[[Sequence[str]], tuple[Output, bool]]


def main(
    argv: Sequence[str] | None = None, *, dispatch: Dispatch = run, prog: str = "stackmagic"
) -> int:
    """Carry out one command and print its output; every mistake is one line on stderr.

    A reader that has gone (``| head -1``) stops nothing: what it would have read is dropped.
    """
    words = list(sys.argv[1:] if argv is None else argv)
    with pipe_safe_streams():
        return _carry_out(words, dispatch, prog)


def _carry_out(words: list[str], dispatch: Dispatch, prog: str) -> int:
    garbled = next((word for word in words if not _is_text(word)), None)
    if garbled is not None:  # bytes the locale could not decode: no name, path or id has them
        error_line(
            f"{prog}: error: the argument {one_line(repr(garbled))} is not valid UTF-8 text; "
            "retype it (or set a UTF-8 locale, LANG=C.UTF-8)"
        )
        return EXIT_USAGE
    header = _run_header(words) if shows_colour(sys.stderr) else None
    try:
        with _first_line_at_once(header):  # ended before anything else is printed
            output, as_json = dispatch(words)
    except HelpShown:
        return 0
    except UsageError as error:
        command = f"{prog} {error.command}".rstrip()
        error_line(f"{command}: error: {error} (see `{command} --help`)")
        return EXIT_USAGE
    except RunFailed as error:
        # The screen that watched the run's live display saw how each step ended: the
        # error line says the rest, once. A log, a file or a script gets the record first.
        watched = header is not None and shows_colour(sys.stdout)
        if error.output is not None and (error.as_json or not watched):
            show(error.output, error.as_json)
        error_line(f"{prog}: error: {error}")
        return EXIT_FAILED_RUN
    except StackmagicError as error:
        error_line(f"{prog}: error: {error}")
        return EXIT_USAGE
    except OSError as error:  # an unwritable folder, a full disk...
        error_line(f"{prog}: error: {describe_os_error(error)}")
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    show(output, as_json)
    return 0


def _is_text(word: str) -> bool:
    """False for a word holding undecodable bytes (surrogate escapes), which no store takes."""
    try:
        word.encode()
    except UnicodeEncodeError:
        return False
    return True


@contextlib.contextmanager
def _first_line_at_once(header: str | None) -> Iterator[None]:
    """On a screen, ``pipeline run`` says what it runs where at once, then "preparing" live.

    Reading the notebook, opening the stores and making the bundle take seconds
    before the run's first step; the line comes before any of it, and before rich
    is imported. Elsewhere (a log, a pipe) nothing is said before the run starts,
    so a mistake found first is still the command's one line.
    """
    if header is None:
        yield
        return
    sys.stderr.write(f"\x1b[1m{header}\x1b[0m\n")
    sys.stderr.flush()
    from .terminal_progress import preparing

    with preparing(sys.stderr):
        yield


def _run_header(words: list[str]) -> str | None:
    """ "Running NOTEBOOK on stack S" for a ``pipeline run`` that shows live progress."""
    if words[:2] != ["pipeline", "run"] or {"-h", "--help"} & set(words):
        return None
    try:
        args = parse(words)
    except (StackmagicError, HelpShown):
        return None  # the command itself says what is wrong
    if (
        args.notebook is None
        or args.as_json
        or args.dry_run
        or args.progress not in ("auto", "bar")
    ):
        return None
    try:
        stack = args.stack or Registry.open().active_stack_name()
    except (StackmagicError, OSError):
        return f"Running {Path(args.notebook).name}"
    return f"Running {Path(args.notebook).name} on stack {stack}"


def console() -> NoReturn:
    """The ``stackmagic`` console script: :func:`main`, without the garbage collection at exit.

    Asked by a shell to complete a word (argcomplete's ``_ARGCOMPLETE``), it answers and exits.
    """
    if "_ARGCOMPLETE" in os.environ:
        from .terminal_completion import complete

        complete()
    code = main()
    leave_memory_to_exit()
    sys.exit(code)
