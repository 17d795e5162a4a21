"""The ``stackmagic`` command: the shared grammar, printed for a terminal."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from .argparsing import HelpShown
from .errors import StackmagicError, UsageError, describe_os_error
from .parser import run

EXIT_USAGE = 2
EXIT_FAILED_RUN = 1


def main(argv: Sequence[str] | None = None) -> int:
    try:
        output, as_json = run(sys.argv[1:] if argv is None else argv)
    except HelpShown:
        return 0
    except UsageError as error:
        command = f"stackmagic {error.command}".rstrip()
        print(f"{command}: error: {error} (see `{command} --help`)", file=sys.stderr)
        return EXIT_USAGE
    except StackmagicError as error:
        shown = getattr(error, "output", None)  # a failed run: its steps, then why it failed
        if shown is not None:
            print(shown.text())
        print(f"stackmagic: error: {error}", file=sys.stderr)
        return EXIT_FAILED_RUN if shown is not None else EXIT_USAGE
    except OSError as error:  # an unwritable folder, a full disk...
        print(f"stackmagic: error: {describe_os_error(error)}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("stackmagic: interrupted", file=sys.stderr)
        return 130
    print(output.to_json() if as_json else output.text())
    return 0
