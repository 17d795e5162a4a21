"""Start a command that Linux kills when the process that started it dies: a step's kernel.

``python -I -S die_with_parent.py PARENT_PID COMMAND...`` asks Linux for
SIGKILL on its parent's death (``PR_SET_PDEATHSIG``), then becomes COMMAND
(``exec``, same process), which keeps that request. A step kernel started so
stops the moment its run's process is killed, instead of writing on until
ipykernel's parent poller notices a second or two later (the poller still
serves everywhere else). Only the standard library, without ``site``: it costs
milliseconds before the kernel's own start.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1


def main(argv: list[str]) -> None:
    parent, command = int(argv[0]), argv[1:]
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) != 0:
        error = ctypes.get_errno()
        raise OSError(error, f"prctl(PR_SET_PDEATHSIG): {os.strerror(error)}")
    if os.getppid() != parent:  # it died before the request: nothing would kill us then
        sys.exit(f"the process that started this kernel ({parent}) has ended")
    os.execvp(command[0], command)


if __name__ == "__main__":
    main(sys.argv[1:])
