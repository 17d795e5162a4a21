"""Whether the process driving a run still lives, judged by another process, maybe elsewhere.

A host name and a PID do not name a process: containers on one machine may
share a host name (``--hostname``, host networking) while each numbers its
processes from 1, and two laptops may both be called ``MacBook-Pro.local``.
So a run records where its PID means something: the machine's boot (Linux's
boot id) and the PID namespace, and the process's start time, which tells a
reused PID from the original. Its PID is looked up only from the same boot
and PID namespace; anywhere else, or where any of this is unknown (another
platform), only the heartbeat tells: silent for ``ABANDONED_AFTER_SECONDS``,
the run is abandoned.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from ...processes import stat_fields

#: How often a running pipeline's process says it is alive, and how long a silence means it died.
HEARTBEAT_SECONDS = 15
ABANDONED_AFTER_SECONDS = 8 * HEARTBEAT_SECONDS

_BOOT_ID = Path("/proc/sys/kernel/random/boot_id")


@dataclass(frozen=True)
class Runner:
    """The process driving a run, as exactly as this platform can tell."""

    host: str
    pid: int | None
    #: None where unknown (not Linux): the PID is then never looked up from elsewhere
    boot_id: str | None = None
    pid_namespace: str | None = None
    #: clock ticks from boot to the process's start (``/proc/PID/stat``)
    started: int | None = None

    @property
    def label(self) -> str:
        """``host:pid``, the run record's ``runner``: how messages name it."""
        return f"{self.host}:{self.pid}"

    def identity(self) -> dict[str, Any]:
        """What the run record keeps beside the label, to tell machines and namespaces apart."""
        return {
            "boot_id": self.boot_id,
            "pid_namespace": self.pid_namespace,
            "started": self.started,
        }

    @classmethod
    def recorded(cls, label: str, identity: dict[str, Any] | None) -> Runner:
        """A run's runner as its record has it. A record without identity (an older
        stackmagic wrote it) leaves the heartbeat alone to judge."""
        host, _, pid = label.rpartition(":")
        known = identity if isinstance(identity, dict) else {}  # others may write the record
        return cls(
            host=host,
            pid=int(pid) if pid.isdigit() else None,
            boot_id=known.get("boot_id"),
            pid_namespace=known.get("pid_namespace"),
            started=known.get("started"),
        )

    def shares_pids_with(self, other: Runner) -> bool:
        """Whether a PID of ``other`` names the same process here: same boot, same PID namespace."""
        return None not in (self.boot_id, self.pid_namespace) and (
            self.boot_id,
            self.pid_namespace,
        ) == (other.boot_id, other.pid_namespace)


def this_runner() -> Runner:
    """This process, as a run driven by it records it."""
    pid = os.getpid()
    return Runner(
        host=socket.gethostname(),
        pid=pid,
        boot_id=_read(_BOOT_ID),
        pid_namespace=_pid_namespace(),
        started=_start_time(pid),
    )


def why_abandoned(runner: Runner, heartbeat: datetime | None, now: datetime) -> str | None:
    """Why the run driven by ``runner`` is abandoned, or None if it may still be going."""
    if this_runner().shares_pids_with(runner):
        alive = _alive(runner)
        if alive is False:
            return "stopped before the run ended"
        if alive:
            return None
    if heartbeat is None or (now - heartbeat).total_seconds() > ABANDONED_AFTER_SECONDS:
        return f"stopped before the run ended (no heartbeat for over {ABANDONED_AFTER_SECONDS} s)"
    return None


def _alive(runner: Runner) -> bool | None:
    """Whether the process of this boot and PID namespace lives; None if that cannot be told."""
    if not runner.pid:
        return None
    try:
        os.kill(runner.pid, 0)
    except (ProcessLookupError, OverflowError):  # gone, or a PID no process can have
        return False
    except PermissionError:  # alive, another user's
        pass
    if runner.started is None:
        return None
    started = _start_time(runner.pid)
    if started is None:  # it ended meanwhile, or /proc hides it
        return None
    return started == runner.started  # else the PID was reused by another process


def _pid_namespace() -> str | None:
    try:
        return os.readlink("/proc/self/ns/pid")  # "pid:[4026531836]"
    except OSError:
        return None


def _start_time(pid: int) -> int | None:
    fields = stat_fields(pid)
    if fields is None:
        return None
    try:
        return int(fields[19])  # field 22 of proc(5); the list starts at field 3
    except (IndexError, ValueError):
        return None


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip() or None
    except OSError:
        return None
