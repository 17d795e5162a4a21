"""Live progress of a run: the running steps on a screen, a widget in a notebook, lines in a log.

The orchestrator calls these from one thread, so displays are never updated
concurrently. A step that runs rather than coming from the cache says why
("code changed (cell 7)", see ``runtime.cache``). A failed step's error is not
repeated here: the command says it once, as it ends.
"""

from __future__ import annotations

import html
import sys
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from .terminal import shows_colour

if TYPE_CHECKING:
    from .runtime import StepOutcome

ICONS = {
    "pending": "·",
    "running": "▶",
    "completed": "✓",
    "cached": "↺",
    "failed": "✗",
    "skipped": "–",
    "cancelled": "■",
}


class TextSink(Protocol):
    """Where log lines go: a text file, a console, or several at once."""

    def write(self, text: str, /) -> int: ...

    def flush(self) -> None: ...


@dataclass(frozen=True)
class StepJob:
    """A step's try started as a step operator's job: where to see it."""

    step: str
    flavor: str
    job_id: str
    url: str
    attempt: int

    def line(self) -> str:
        return (
            f"{self.step}: {self.flavor} job {self.job_id} started (try {self.attempt}): {self.url}"
        )


class Progress:
    """Shows no progress, for scripts that only want the result; warnings go to :mod:`warnings`."""

    def warn(self, message: str) -> None:
        warnings.warn(message, stacklevel=2)

    def note(self, message: str) -> None:
        """Something the user may want to follow up on: where a submitted run can be watched."""

    def step_job(self, job: StepJob) -> None:
        """A step's try runs as a step operator's job; said as a note where nothing shows more."""
        self.note(job.line())

    def run_started(self, run_id: str, pipeline: str, steps: list[str]) -> None:
        pass

    def step_started(self, step: str, reason: str | None = None) -> None:
        """``step`` runs, for ``reason`` (None where a remote run did not say)."""

    def step_finished(self, outcome: StepOutcome) -> None:
        pass

    def run_finished(self) -> None:
        pass


class Shown(Progress):
    """Progress someone watches: warnings are lines on stderr, beside it."""

    def warn(self, message: str) -> None:
        print(f"warning: {message}", file=sys.stderr, flush=True)

    def note(self, message: str) -> None:
        print(message, file=sys.stderr, flush=True)


class LogLines(Shown):
    """One line per event, for logs and for terminals that are not a screen (CI)."""

    def __init__(self, stream: TextSink | None = None) -> None:
        self.stream = stream or sys.stderr

    def note(self, message: str) -> None:
        self._print(message)  # a VM's log keeps what its run says: a step operator's job's lines

    def run_started(self, run_id: str, pipeline: str, steps: list[str]) -> None:
        self._print(f"run {run_id} of {pipeline}: {len(steps)} steps")

    def step_started(self, step: str, reason: str | None = None) -> None:
        self._print(f"  {step}: {running_note(reason)}")

    def step_finished(self, outcome: StepOutcome) -> None:
        self._print(f"  {outcome.step}: {_describe(outcome, why=False, error=False)}")

    def _print(self, line: str) -> None:
        print(line, file=self.stream, flush=True)


class NotebookWidget(Shown):
    """A progress bar and a table of the steps, updated in place under the cell."""

    def __init__(self) -> None:
        self._status: dict[str, str] = {}
        self._notes: dict[str, str] = {}
        self._jobs: dict[str, StepJob] = {}

    def run_started(self, run_id: str, pipeline: str, steps: list[str]) -> None:
        import ipywidgets
        from IPython.display import display

        self._title = f"Run {run_id} of {pipeline}"
        self._status = dict.fromkeys(steps, "pending")
        self._bar = ipywidgets.IntProgress(min=0, max=len(steps), description="steps")
        self._table = ipywidgets.HTML()
        self._render()
        display(ipywidgets.VBox([self._bar, self._table]))

    def step_started(self, step: str, reason: str | None = None) -> None:
        self._status[step] = "running"
        self._notes[step] = running_note(reason)
        self._render()

    def step_finished(self, outcome: StepOutcome) -> None:
        self._status[outcome.step] = outcome.status
        self._notes[outcome.step] = _describe(outcome)
        self._bar.value += 1
        if outcome.status == "failed":
            self._bar.bar_style = "danger"
        self._render()

    def run_finished(self) -> None:
        if self._bar.bar_style != "danger":
            self._bar.bar_style = "success"

    def step_job(self, job: StepJob) -> None:
        self._jobs[job.step] = job
        self._render()

    def _render(self) -> None:
        rows = "".join(
            f"<tr><td>{ICONS[status]}</td><td>{html.escape(step)}</td>"
            f"<td>{html.escape(self._notes.get(step, status))}{self._job_link(step)}</td></tr>"
            for step, status in self._status.items()
        )
        self._table.value = f"<b>{html.escape(self._title)}</b><table>{rows}</table>"

    def _job_link(self, step: str) -> str:
        job = self._jobs.get(step)
        if job is None:
            return ""
        return (
            f' — {html.escape(job.flavor)} job <a href="{html.escape(job.url)}" '
            f'target="_blank" rel="noopener">{html.escape(job.job_id)}</a>'
        )


def running_note(reason: str | None) -> str:
    return f"running — {reason}" if reason else "running"


def _describe(outcome: StepOutcome, *, why: bool = True, error: bool = True) -> str:
    """How a step ended; ``why`` it ran too, for displays that did not say when it started;
    the ``error`` of a failed step, for displays the command's error line does not follow."""
    if outcome.status == "failed":
        return f"failed: {outcome.error}" if error else "failed"
    if outcome.status in ("skipped", "cached", "cancelled"):
        return outcome.status
    done = f"{outcome.status} in {outcome.seconds:.1f} s"
    return f"{done} — {outcome.reason}" if why and outcome.reason else done


def choose(kind: str = "auto") -> Progress:
    """``auto``: the widget in a notebook, the live steps on a screen, lines elsewhere
    (``NO_COLOR`` too: a line per event is what a screen reader follows)."""
    if kind == "none":
        return Progress()
    if kind == "widget" or (kind == "auto" and _in_kernel()):
        return NotebookWidget()
    if kind == "lines" or (kind == "auto" and not shows_colour(sys.stderr)):
        return LogLines()
    from .terminal_progress import LiveSteps, started_early

    return started_early() or LiveSteps()


def _in_kernel() -> bool:
    """True in a Jupyter kernel, where widgets can be shown (not in a terminal IPython)."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    return shell is not None and type(shell).__name__ == "ZMQInteractiveShell"
