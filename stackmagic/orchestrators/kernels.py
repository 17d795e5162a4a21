"""Kernels started ahead of need, for the papermill engine that runs step notebooks on them.

A fresh kernel costs about half a second of CPU, so a pipeline that starts
one per step, in sequence, spends most of its time waiting for kernels. The
pool starts kernels while earlier steps run; each kernel still serves exactly
one step (steps never share state) and is shut down in the background after.
Kernels talk over Unix sockets in a private folder, not TCP ports (unless the
temporary folder's path is too long for a socket's). On Linux,
a kernel dies with the process that started it (see ``die_with_parent``):
a killed run leaves no step writing on.
"""

from __future__ import annotations

import asyncio
import importlib
import os
import sys
import threading
from collections import deque
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from types import ModuleType
from typing import Any

from ..deferred_imports import defer_slow_imports
from ..errors import StackmagicError
from ..scratch import ScratchFolder

_DIE_WITH_PARENT = Path(__file__).with_name("die_with_parent.py")
_IMPORTING = threading.Lock()
#: The longest Unix socket path every platform takes (macOS: 103 bytes, Linux: 107), less the
#: ``-N`` jupyter_client appends for each channel.
_LONGEST_SOCKET_PREFIX = 96
#: jupyter_client's parts as the pool uses them: imported when a kernel is first needed.
MANAGERS = "stackmagic.orchestrators.managers"


def import_papermill() -> None:
    """papermill, imported one thread at a time, without what it need not load now."""
    defer_slow_imports()
    import_in_one_thread("papermill")


def import_in_one_thread(name: str) -> ModuleType:
    """Import a module holding a lock: threads importing the modules of one package at once
    can find them half made (jupyter_client's import each other; papermill loads plugins)."""
    module = sys.modules.get(name)
    if module is not None and not getattr(module.__spec__, "_initializing", False):
        return module
    with _IMPORTING:
        return importlib.import_module(name)


def wrap_to_die_with_parent(command: list[str]) -> list[str]:
    """``command``, started so that Linux kills it when this process dies."""
    if not sys.platform.startswith("linux"):  # ipykernel's parent poller is the fallback
        return command
    return [sys.executable, "-I", "-S", str(_DIE_WITH_PARENT), str(os.getpid()), *command]


class KernelPool:
    """Started kernels of one kind, in one working folder, waiting for steps."""

    def __init__(self, kernel_name: str, cwd: Path, env: Mapping[str, str] | None = None) -> None:
        """``env`` adds to this process's environment for the kernels: the stores' secrets."""
        self.kernel_name = kernel_name
        self.cwd = cwd
        self.environment = {**os.environ, **(env or {})}
        self._scratch = ScratchFolder("kernels")
        self._folder = self._scratch.path
        #: where the kernels' own output goes (what they print outside of cells)
        self.log = open(self._folder / "kernels.log", "ab")  # noqa: SIM115 - closed in close()
        self._waiting: deque[Future[Any]] = deque()
        self._in_use: set[Any] = set()
        self._starter = ThreadPoolExecutor(max_workers=2, thread_name_prefix="kernel-start")
        self._stopper = ThreadPoolExecutor(max_workers=2, thread_name_prefix="kernel-stop")
        self._lock = threading.Lock()
        self._count = 0
        self._closed = False

    def reserve(self, count: int) -> None:
        """Have at least ``count`` kernels started or starting for steps to come."""
        with self._lock:
            while not self._closed and len(self._waiting) < count:
                self._waiting.append(self._starter.submit(self._start))

    def take(self) -> Any:
        """A started kernel manager for one step (started now if none is waiting)."""
        with self._lock:
            if self._closed:
                raise StackmagicError("the run was stopped")
            future = self._waiting.popleft() if self._waiting else self._starter.submit(self._start)
        manager = future.result()
        with self._lock:
            if not self._closed:
                self._in_use.add(manager)
                return manager
        _stop(manager)  # the pool closed while this kernel started: stop it here, right away
        raise StackmagicError("the run was stopped")

    def written_by_setup(self, folder: Path) -> list[str]:
        """Files under ``folder`` the setup wrote before a step's kernel took over: none, for
        a fresh kernel runs the setup itself (see ``warm``)."""
        return []

    @property
    def stopped(self) -> bool:
        """Closed: the run is over, or was interrupted while steps ran."""
        return self._closed

    def retire(self, manager: Any) -> None:
        """Shut a used kernel down without making the next step wait for it."""
        with self._lock:
            if manager not in self._in_use:  # already stopped by close()
                return
            self._in_use.discard(manager)
        self._stopper.submit(_stop, manager)

    def close(self) -> None:
        """Stop every kernel: those waiting, and those still running a step (an interrupted run)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            waiting = list(self._waiting)
            self._waiting.clear()
            running = list(self._in_use)
            self._in_use.clear()
        for manager in running:
            self._stopper.submit(_stop, manager)
        for future in waiting:
            future.add_done_callback(
                lambda done: done.exception() or self._stopper.submit(_stop, done.result())
            )
        self._starter.shutdown(wait=True)
        self._stopper.shutdown(wait=True)
        self.log.close()
        self._scratch.remove()

    def _start(self) -> Any:
        try:
            return self._launch()
        finally:
            close_thread_loop()

    def _connection_files(self) -> dict[str, str]:
        """How the next kernel connects: Unix sockets in the pool's private folder, or, where
        that folder's path is too long to name a socket, TCP on the loopback address."""
        with self._lock:
            self._count += 1
            number = self._count
        sockets = str(self._folder / f"kernel-{number}")
        unix = len(os.fsencode(sockets)) <= _LONGEST_SOCKET_PREFIX
        return {
            "transport": "ipc" if unix else "tcp",
            "ip": sockets if unix else "127.0.0.1",
            "connection_file": str(self._folder / f"kernel-{number}.json"),
        }

    def _launch(self) -> Any:
        managers = import_in_one_thread(MANAGERS)
        from jupyter_client.kernelspec import NoSuchKernel

        manager = managers.StepKernelManager(
            kernel_name=self.kernel_name,
            client_class=managers.STEP_CLIENT,
            **self._connection_files(),
        )
        try:
            manager.start_kernel(
                cwd=str(self.cwd), env=dict(self.environment), stdout=self.log, stderr=self.log
            )
        except NoSuchKernel:
            raise missing_kernel(self.kernel_name) from None
        return manager


def check_kernel(name: str) -> None:
    """Refuse a kernel that is not installed before anything starts.

    A kernel spec found where Jupyter keeps them is enough (a cached run starts
    no kernel, and asks nothing more); jupyter_client answers the rest.
    """
    from jupyter_core.paths import jupyter_path

    if any(Path(folder, name, "kernel.json").is_file() for folder in jupyter_path("kernels")):
        return
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        KernelSpecManager().get_kernel_spec(name)
    except NoSuchKernel:
        raise missing_kernel(name) from None


def missing_kernel(name: str) -> StackmagicError:
    return StackmagicError(
        f"the notebook's kernel {name!r} is not installed here; install it "
        "(`jupyter kernelspec list` shows the installed ones) or pick another kernel in Jupyter"
    )


def _stop(manager: Any) -> None:
    try:
        manager.shutdown_kernel(now=True)
    except Exception:  # already gone: nothing left to stop
        manager.cleanup_resources()
    finally:
        close_thread_loop()


def close_thread_loop() -> None:
    """jupyter_client and nbclient run their coroutines on an event loop of the calling
    thread's own, which nothing closes: close it when the thread's work is done."""
    try:
        loop = asyncio.get_event_loop_policy().get_event_loop()
    except RuntimeError:  # no loop in this thread
        return
    if not loop.is_running():
        loop.close()
        asyncio.set_event_loop(None)
