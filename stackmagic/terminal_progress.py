"""A run's progress on a screen: the steps running now, each with its time, updated live.

Each step that ends leaves a line (``✓ train  3.2 s  code changed``), so the
screen keeps a record in the order things happened; below them, the steps
running now tick. The last line says how the run ended, red if a step failed:
the error itself is said once, by the command's error line. rich is imported
here, so only a screen pays for it.
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from contextvars import ContextVar
from typing import TYPE_CHECKING, TextIO

from rich.console import Group, RenderableType
from rich.live import Live
from rich.text import Text

from .output import STATUS_STYLES
from .progress import ICONS, Shown
from .terminal import console

if TYPE_CHECKING:
    from collections.abc import Iterator

    from .runtime import StepOutcome

_SPINNER = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"

#: The display a command started before its slow work, for the run to take over.
_STARTED_EARLY: ContextVar[LiveSteps | None] = ContextVar("started_early", default=None)


class LiveSteps(Shown):
    """The running steps and their times, live; a line for each step that ends.

    The orchestrator reports from one thread while rich redraws from its own, so
    what both read is kept under a lock.
    """

    def __init__(self, stream: TextIO | None = None) -> None:
        self._console = console(stream or sys.stderr)
        self._lock = threading.Lock()
        self._begun = time.monotonic()
        self._run: str | None = None
        self._steps: list[str] = []
        self._width = 0
        self._running: dict[str, tuple[float, str | None]] = {}
        self._ended: dict[str, str] = {}
        self._live = Live(
            self,
            console=self._console,
            refresh_per_second=8,
            transient=True,
            redirect_stdout=False,  # stdout may be a pipe while the screen is stderr
        )

    def start(self) -> None:
        """Show "preparing" until the run starts: the command is alive while it loads."""
        self._live.start()

    def warn(self, message: str) -> None:
        self._console.print(Text(f"warning: {message}", style="yellow"))

    def note(self, message: str) -> None:
        self._console.print(Text(message, style="bright_black"))

    def run_started(self, run_id: str, pipeline: str, steps: list[str]) -> None:
        with self._lock:
            self._run = run_id
            self._steps = list(steps)
            self._width = max((len(step) for step in steps), default=0)
        self._console.print(
            Text.assemble(("Run ", "bold"), (run_id, "bold"), f" of {pipeline}: {len(steps)} steps")
        )
        if not self._live.is_started:
            self._live.start()

    def step_started(self, step: str, reason: str | None = None) -> None:
        with self._lock:
            self._running[step] = (time.monotonic(), reason)

    def step_finished(self, outcome: StepOutcome) -> None:
        with self._lock:
            self._running.pop(outcome.step, None)
            self._ended[outcome.step] = outcome.status
        line = Text(f"  {ICONS.get(outcome.status, '?')} {outcome.step.ljust(self._width)}  ")
        line.stylize(STATUS_STYLES.get(outcome.status, ""), 2, 3)
        if outcome.status == "completed":
            line.append(f"{outcome.seconds:.1f} s")
            if outcome.reason:
                line.append(f"  {outcome.reason}", style="bright_black")
        else:
            line.append(outcome.status, style=STATUS_STYLES.get(outcome.status, ""))
        self._console.print(line)

    def run_finished(self) -> None:
        """Say how the run ended, as far as its steps tell: never "completed" for a run that
        failed, or that stopped (interrupted, submitted elsewhere) before its steps ended."""
        self.close()
        took = time.monotonic() - self._begun
        ended = set(self._ended.values())
        if "failed" in ended:
            failed = [step for step, status in self._ended.items() if status == "failed"]
            said = f"✗ run {self._run} failed after {took:.1f} s (step {', '.join(failed)})"
            self._console.print(Text(said, style="bold red"))
        elif "cancelled" in ended:
            said = f"■ run {self._run} cancelled after {took:.1f} s"
            self._console.print(Text(said, style=f"bold {STATUS_STYLES['cancelled']}"))
        elif self._steps and all(step in self._ended for step in self._steps):
            said = f"✓ run {self._run} completed in {took:.1f} s"
            self._console.print(Text(said, style="bold green"))

    def close(self) -> None:
        if self._live.is_started:
            self._live.stop()

    def __rich__(self) -> RenderableType:
        """What the live area shows now: "preparing", or each running step with its time."""
        now = time.monotonic()
        spinner = _SPINNER[int(now * 10) % len(_SPINNER)]
        with self._lock:
            if self._run is None:
                return Text(f"{spinner} preparing the run  {now - self._begun:.1f} s", style="blue")
            running = list(self._running.items())
            done = len(self._ended)
        lines = []
        for step, (started, reason) in running:
            line = Text(f"  {spinner} {step.ljust(self._width)}  {now - started:.1f} s", "blue")
            if reason:
                line.append(f"  {reason}", style="bright_black")
            lines.append(line)
        summary = f"  {done} of {len(self._steps)} steps ended · {now - self._begun:.1f} s"
        return Group(*lines, Text(summary, style="bright_black"))


def started_early() -> LiveSteps | None:
    """The display :func:`preparing` started, if the command started one."""
    return _STARTED_EARLY.get()


@contextlib.contextmanager
def preparing(stream: TextIO) -> Iterator[None]:
    """ "preparing" live until the run's own display takes over: reading the notebook,
    opening the stores and making the bundle take seconds before a run starts."""
    display = LiveSteps(stream)
    display.start()
    token = _STARTED_EARLY.set(display)
    try:
        yield
    finally:
        _STARTED_EARLY.reset(token)
        display.close()
