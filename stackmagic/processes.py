"""What Linux's ``/proc/PID/stat`` tells of a process: whether it still runs, when it started."""

from __future__ import annotations

from pathlib import Path


def stat_fields(pid: int) -> list[str] | None:
    """The fields after the command name (field 3 of proc(5) first); None: no such process.

    The command name, in parentheses before them, may hold spaces and parentheses itself.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rpartition(")")[2].split() or None


def running(pid: int) -> bool:
    """Not ended: a zombie (ended, its parent has not reaped it) runs no code any more."""
    fields = stat_fields(pid)
    return fields is not None and fields[0] not in ("Z", "X")
