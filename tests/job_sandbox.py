"""A step operator's job, played on this machine: its container's command in a sandbox folder.

The fakes of the step-operator backends (and the moto SageMaker stand-in)
start a job's command here as its container would run it: in a folder of its
own, without the test's stackmagic settings, with the environment the job's
identity and its definition would give it. Its output is the job's log; its
exit status the job's end; stopping the job kills its process group.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path

from vm_sandbox import INSTANCE_IDENTITY, vm_environment

#: What a job's identity (its role, service account, managed identity) gives it for the bucket:
#: the S3 emulator's testing keys; a test whose bucket needs more (an endpoint) replaces it.
JOB_IDENTITY: Mapping[str, str] = INSTANCE_IDENTITY


class SandboxJob:
    """One job's container: started at once, its lines kept as they come."""

    def __init__(
        self,
        command: Sequence[str],
        folder: Path,
        environment: Mapping[str, str] = {},  # noqa: B006 - read only
        identity: Mapping[str, str] | None = None,
    ) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.command = list(command)
        self.lines: list[str] = []
        self.stopped = False
        self.process = subprocess.Popen(
            self.command,
            cwd=folder,
            env={
                **vm_environment(folder, JOB_IDENTITY if identity is None else identity),
                **environment,
            },
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def exit_code(self) -> int | None:
        """None while it runs; its status once it has ended and its output is all read."""
        code = self.process.poll()
        if code is None:
            return None
        self._reader.join(timeout=5)
        return code

    def state(self) -> str:
        """``running``, ``succeeded``, ``failed`` or ``stopped``."""
        code = self.exit_code
        if code is None:
            return "running"
        if self.stopped:
            return "stopped"
        return "succeeded" if code == 0 else "failed"

    def stop(self) -> None:
        """What the backend does to a job it is asked to stop: the container is killed."""
        if self.process.poll() is None:
            self.stopped = True
            os.killpg(self.process.pid, signal.SIGKILL)

    def wait(self, timeout: float = 600) -> int:
        code = self.process.wait(timeout)
        self._reader.join(timeout=5)
        return code
