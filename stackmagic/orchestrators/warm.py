"""Warm step kernels: the setup runs once per run, each step's kernel is a fork of it.

A fresh kernel per step pays the kernel's start and the setup cells again
(importing pandas and scikit-learn is seconds of CPU) for a body that often
takes milliseconds. :class:`WarmKernelPool` starts one template process per
run in the kernel's own Python (``template_kernel``), runs the setup cells
and the parameters there once, then forks a kernel for each step: steps stay
as isolated from each other as before, each in a process of its own, and the
executed notebook shows the setup cells with the outputs they produced.

Where forking is unsafe or impossible, the pool falls back to fresh kernels
and says why in one line: a kernel that is not ipykernel, a machine that is
not Linux, a setup that failed, started threads (Python's, or an OpenMP
pool), kept files, connections or an event loop open, or imported a runtime
that cannot be forked.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import StackmagicError
from .kernels import MANAGERS, KernelPool, import_in_one_thread, wrap_to_die_with_parent

if TYPE_CHECKING:
    from ..notebook.exporter import Bundle

#: papermill's tag for the cell it adds with the run's parameters
INJECTED = "injected-parameters"
_TEMPLATE_MODULE = "stackmagic.orchestrators.template_kernel"
_IPYKERNEL_LAUNCHERS = (["-m", "ipykernel_launcher"], ["-m", "ipykernel"])


@dataclass(frozen=True)
class Setup:
    """What the template ran before forking: the setup cells, in the step notebooks' order."""

    sources: list[str]
    #: global generators the setup seeds (see ``notebook.randomness``)
    seeded: list[str]


@dataclass(frozen=True)
class SetupRecord:
    """How each setup cell ran in the template: what a step's notebook shows for it."""

    cells: list[dict[str, Any]]
    #: the files the setup wrote, as absolute paths: every step claims them, as a step whose
    #: kernel ran the setup itself did
    written: list[str] = field(default_factory=list)


class WarmKernelPool(KernelPool):
    """Kernels forked from a template that ran the setup, or fresh ones where that is unsafe."""

    def __init__(
        self,
        kernel_name: str,
        cwd: Path,
        setup: Callable[[], Setup],
        env: Mapping[str, str] | None = None,
        on_note: Callable[[str], None] = lambda line: None,
    ) -> None:
        """``setup`` gives the cells to run in the template, when a step first needs a kernel."""
        super().__init__(kernel_name, cwd, env)
        self._setup = setup
        self._on_note = on_note
        self._template: Template | None = None
        self._template_lock = threading.Lock()
        self._cold: str | None = None  # why kernels start fresh, once decided
        #: the template while its setup runs, which may take long: close() ends it at once
        self._setting_up: Template | None = None
        self._stopping = False

    def _launch(self) -> Any:
        managers = import_in_one_thread(MANAGERS)
        template = self._warm_template()
        if template is None:
            return super()._launch()
        manager = managers.ForkedKernelManager(
            template,
            kernel_name=self.kernel_name,
            client_class=managers.STEP_CLIENT,
            **self._connection_files(),
        )
        manager.start_kernel(cwd=str(self.cwd))
        return manager

    def _warm_template(self) -> Template | None:
        """The run's template, started and set up on first need; None: fresh kernels."""
        with self._template_lock:
            if self._template is None and self._cold is None:
                try:
                    self._template = self._set_up_template()
                except (_Unsafe, OSError) as reason:  # OSError: its Python would not start
                    if self._stopping:
                        raise StackmagicError("the run was stopped") from None
                    self._cold = str(reason)
                    self._on_note(f"steps start in fresh kernels: {reason}")
            return self._template

    def _set_up_template(self) -> Template:
        template = Template.launch(self)
        self._setting_up = template
        try:
            template.set_up(self._setup())
        finally:
            self._setting_up = None
        return template

    def written_by_setup(self, folder: Path) -> list[str]:
        """The files under ``folder`` the template's setup wrote (it is set up first)."""
        try:
            template = self._warm_template()
        except StackmagicError:  # the kernel is missing: the step will say so
            return []
        if template is None:
            return []
        paths = (Path(path) for path in template.record.written)
        return [
            path.relative_to(folder).as_posix() for path in paths if path.is_relative_to(folder)
        ]

    def close(self) -> None:
        self._stopping = True
        setting_up = self._setting_up
        if setting_up is not None:  # a setup under way: the pool's threads wait for it
            setting_up.process.kill()
        super().close()
        with self._template_lock:
            if self._template is not None:
                self._template.stop()


class _Unsafe(Exception):
    """Why steps cannot be forked from a template in this run."""


class Template:
    """The template process: answers one JSON line for each request line."""

    def __init__(self, process: subprocess.Popen[str], log: Path) -> None:
        """``log``: where the template's own output goes, to tell why it ended."""
        self.process, self.log = process, log
        self.record = SetupRecord([])
        self._lock = threading.Lock()

    @classmethod
    def launch(cls, pool: WarmKernelPool) -> Template:
        """The template process, started with the kernel's Python; not set up yet."""
        command = _template_command(pool.kernel_name)
        process = subprocess.Popen(
            wrap_to_die_with_parent(command),
            cwd=pool.cwd,
            env={**pool.environment, **_kernel_env(pool.kernel_name)},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=pool.log,
            text=True,
            start_new_session=True,  # Ctrl-C is the run's to handle: it stops the template
        )
        return cls(process, Path(pool.log.name))

    def set_up(self, setup: Setup) -> None:
        """Run the setup; the template is stopped if forking it would be unsafe."""
        try:
            answer = self.ask({"op": "setup", "cells": setup.sources, "seeded": setup.seeded})
            if answer["failed"]:
                raise _Unsafe(f"the setup raised {answer['failed']} in the template")
            if answer["unsafe"]:
                raise _Unsafe(answer["unsafe"])
        except _Unsafe:
            self.stop()
            raise
        self.record = SetupRecord(answer["cells"], answer["written"])

    def ask(self, request: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            stdin, stdout = self.process.stdin, self.process.stdout
            assert stdin is not None and stdout is not None
            try:
                stdin.write(json.dumps(request) + "\n")
                stdin.flush()
                line = stdout.readline()
            except (BrokenPipeError, ValueError):  # ValueError: closed by stop()
                line = ""
        if not line:
            said = [text for text in self.log.read_text(errors="replace").splitlines() if text]
            last = f": {said[-1].strip()}" if said else ""
            raise _Unsafe(f"the template process ended (exit code {self.process.poll()}){last}")
        answer: dict[str, Any] = json.loads(line)
        return answer

    def fork(self, connection_file: str) -> int:
        return int(self.ask({"op": "fork", "connection_file": connection_file})["pid"])

    def stop(self) -> None:
        """End the template; its forks die with it (``PR_SET_PDEATHSIG``)."""
        with self._lock:
            if self.process.stdin is not None:
                self.process.stdin.close()
        try:
            self.process.wait(timeout=2)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()


def run_setup(bundle: Bundle, overrides: Mapping[str, Any]) -> Setup:
    """The cells every step notebook of the bundle starts with, as the template runs them.

    They are the setup cells and the parameters cell, then the run's parameters
    where papermill injects them. Only the step's context, which papermill
    injects with them, differs from step to step: each fork is told its own.
    Read without papermill, so that the template starts while papermill loads.
    """
    from ..notebook.analysis import analyse
    from ..notebook.exporter import CONTEXT_VARIABLE
    from ..notebook.randomness import seeded_generators
    from ..notebook.spec import PARAMETERS_TAG

    first = bundle.step_notebook(next(iter(bundle.steps)))
    sources = []
    for cell in setup_cells(json.loads(first.read_text(encoding="utf-8"))["cells"]):
        sources.append("".join(cell["source"]))
        if PARAMETERS_TAG in cell["metadata"].get("tags", []):
            injected = {**overrides, CONTEXT_VARIABLE: {}}
            sources.append("\n".join(f"{name} = {value!r}" for name, value in injected.items()))
    # a seed may be set by a helper module beside the notebook: seed_everything(42)
    modules = [path.read_text(errors="replace") for path in sorted(bundle.sources.rglob("*.py"))]
    uses = {}
    for source in [*sources, *modules]:
        with contextlib.suppress(StackmagicError):  # a module that does not parse seeds nothing
            uses[source] = analyse(source, "the setup")
    return Setup(sources, sorted(seeded_generators(uses)))


def setup_cells(cells: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The code cells a step notebook starts with, which the template runs: the setup, the
    parameters, and those papermill injects (in a notebook it parameterized)."""
    from ..notebook.exporter import SETUP_ROLE  # here: papermill imports this module's engine

    taken = []
    for cell in cells:
        if cell["cell_type"] != "code":
            continue
        role = cell["metadata"].get("stackmagic", {}).get("role")
        injected = INJECTED in cell["metadata"].get("tags", [])
        if role not in (SETUP_ROLE, "parameters") and not injected:
            break
        taken.append(cell)
    return taken


def _template_command(kernel_name: str) -> list[str]:
    """The kernel's Python running the template, or why it cannot."""
    if not sys.platform.startswith("linux"):  # no fork on Windows; on macOS, unsafe after
        raise _Unsafe("forking a kernel is safe on Linux only")  # its frameworks start
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        spec = KernelSpecManager().get_kernel_spec(kernel_name)
    except NoSuchKernel:
        raise _Unsafe(f"the kernel {kernel_name!r} is not installed") from None
    argv = list(spec.argv)
    if spec.language.lower() != "python" or argv[1:3] not in _IPYKERNEL_LAUNCHERS:
        raise _Unsafe(f"the kernel {kernel_name!r} is not ipykernel")
    python = argv[0]
    major, minor = sys.version_info[:2]
    if python in {"python", f"python{major}", f"python{major}.{minor}"}:
        python = sys.executable  # as jupyter_client reads the kernel's command
    return [python, "-m", _TEMPLATE_MODULE]


def _kernel_env(kernel_name: str) -> dict[str, str]:
    from jupyter_client.kernelspec import KernelSpecManager

    return dict(KernelSpecManager().get_kernel_spec(kernel_name).env or {})


def setup_record(manager: Any) -> SetupRecord | None:
    """How the setup ran for this kernel's step, if it was forked from a template."""
    record = getattr(manager, "setup", None)
    return record if isinstance(record, SetupRecord) else None
