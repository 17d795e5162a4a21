"""The ``stackmagic`` command: the shared grammar, printed for a terminal."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import NoReturn

from .argparsing import HelpShown
from .errors import RunFailed, StackmagicError, UsageError, describe_os_error
from .exiting import leave_memory_to_exit
from .output import Output
from .parser import run

EXIT_USAGE = 2
EXIT_FAILED_RUN = 1


Dispatch = Callable[[Sequence[str]], tuple[Output, bool]]


def main(
    argv: Sequence[str] | None = None, *, dispatch: Dispatch = run, prog: str = "stackmagic"
) -> int:
    """Carry out one command and print its output; every mistake is one line on stderr."""
    try:
        output, as_json = dispatch(sys.argv[1:] if argv is None else argv)
    except HelpShown:
        return 0
    except UsageError as error:
        command = f"{prog} {error.command}".rstrip()
        print(f"{command}: error: {error} (see `{command} --help`)", file=sys.stderr)
        return EXIT_USAGE
    except RunFailed as error:
        if error.output is not None:
            print(error.output.to_json() if error.as_json else error.output.text())
        print(f"{prog}: error: {error}", file=sys.stderr)
        return EXIT_FAILED_RUN
    except StackmagicError as error:
        print(f"{prog}: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as error:  # an unwritable folder, a full disk...
        print(f"{prog}: error: {describe_os_error(error)}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    print(output.to_json() if as_json else output.text())
    return 0


def console() -> NoReturn:
    """The ``stackmagic`` console script: :func:`main`, without the garbage collection at exit."""
    code = main()
    leave_memory_to_exit()
    sys.exit(code)
