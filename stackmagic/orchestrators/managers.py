"""jupyter_client's kernel client, manager and provisioner, as the steps' kernels need them.

Imported when a step first needs a kernel, never by a run whose steps all
come from the cache: jupyter_client costs more to import than such a run.
"""

from __future__ import annotations

import os
import signal
import time
import uuid
from queue import Empty
from typing import TYPE_CHECKING, Any

from jupyter_client.asynchronous.client import AsyncKernelClient
from jupyter_client.manager import KernelManager
from jupyter_client.provisioning.local_provisioner import LocalProvisioner

from ..processes import running
from .kernels import wrap_to_die_with_parent

if TYPE_CHECKING:
    from .warm import Template

#: How long a kernel's IOPub may stay silent after its kernel_info reply before we ask again.
_IOPUB_PATIENCE = 0.1
#: The client class kernel managers make, by name as jupyter_client takes it.
STEP_CLIENT = "stackmagic.orchestrators.managers.StepKernelClient"


class StepKernelClient(AsyncKernelClient):
    """jupyter_client's async client, ready as soon as the kernel's IOPub is seen to work.

    jupyter_client's ``wait_for_ready`` ends by waiting for 0.2 s of silence on
    IOPub: a fifth of a second per step. Here the kernel is ready once the
    ``idle`` status of our own kernel_info request arrives on IOPub, which
    proves both channels carry messages; if it never comes (IOPub was not yet
    connected when it was sent), we ask again.
    """

    async def _async_wait_for_ready(self, timeout: float | None = None) -> None:
        deadline = time.monotonic() + (timeout if timeout is not None else float("inf"))
        while time.monotonic() < deadline:
            asked = self.kernel_info()
            reply = await self._reply_to(asked, deadline)
            if reply is not None and await self._idle_after(asked):
                self._handle_kernel_info_reply(reply)
                return
            if not await self._async_is_alive():
                raise RuntimeError("Kernel died before replying to kernel_info")
        raise RuntimeError(f"Kernel didn't respond in {timeout:.0f} seconds")

    async def _reply_to(self, msg_id: str, deadline: float) -> dict[str, Any] | None:
        while time.monotonic() < deadline:
            try:
                msg = await self.shell_channel.get_msg(timeout=1)
            except Empty:
                return None
            if msg["parent_header"].get("msg_id") == msg_id:
                return msg
        return None

    async def _idle_after(self, msg_id: str) -> bool:
        patience = time.monotonic() + _IOPUB_PATIENCE
        while time.monotonic() < patience:
            try:
                msg = await self.iopub_channel.get_msg(timeout=patience - time.monotonic())
            except Empty:
                return False
            if (
                msg["msg_type"] == "status"
                and msg["parent_header"].get("msg_id") == msg_id
                and msg["content"]["execution_state"] == "idle"
            ):
                return True
        return False

    wait_for_ready = _async_wait_for_ready


class StepKernelManager(KernelManager):
    """Starts the kernel through ``die_with_parent`` on Linux, so it dies with this process.

    Linux signals the kernel when the *thread* that started it ends, not the process: the
    pool's starter threads start every kernel and live until :meth:`KernelPool.close`,
    which stops the pool's kernels anyway.
    """

    def format_kernel_cmd(self, extra_arguments: list[str] | None = None) -> list[str]:
        return wrap_to_die_with_parent(super().format_kernel_cmd(extra_arguments))


class ForkedProcess:
    """A forked kernel, for the provisioner: the template's child, so signalled, never waited."""

    stdin = stdout = stderr = None

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        # a fork whose template ended first is an orphan, and where nothing reaps orphans
        # (PID 1 of many containers) it stays a zombie, which signal 0 still finds
        if self.returncode is None and not running(self.pid):
            self.returncode = -1
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        while self.poll() is None:
            time.sleep(0.02)
        return self.returncode or 0

    def send_signal(self, signum: int) -> None:
        os.kill(self.pid, signum)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)


class ForkedProvisioner(LocalProvisioner):
    """jupyter_client's local provisioner, launching by asking the template for a fork."""

    template: Template

    async def launch_kernel(self, cmd: list[str], **kwargs: Any) -> Any:
        assert self.parent is not None  # the kernel manager that asked for this kernel
        pid = self.template.fork(self.parent.connection_file)
        self.process = ForkedProcess(pid)  # type: ignore[assignment]
        self.pid = self.pgid = pid  # the fork leads a process group of its own
        self.cwd = kwargs.get("cwd")
        return self.connection_info


class ForkedKernelManager(StepKernelManager):
    """A step's kernel forked from the template; ``setup`` tells how the setup cells ran."""

    def __init__(self, template: Template, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.setup = template.record
        self.kernel_id = str(uuid.uuid4())
        provisioner = ForkedProvisioner(
            kernel_id=self.kernel_id, kernel_spec=self.kernel_spec, parent=self
        )
        provisioner.template = template
        self.provisioner = provisioner

    def shutdown_kernel(self, now: bool = False, restart: bool = False) -> None:
        """Kill the fork and its subprocesses, and return: the template reaps it, so there
        is nothing to wait for (jupyter_client polls a stopping kernel every 0.1 s)."""
        process = getattr(self.provisioner, "process", None)
        if process is not None:
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:  # ended already
                pass
        self.cleanup_resources(restart)
