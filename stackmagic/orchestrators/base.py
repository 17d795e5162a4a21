"""The interface every orchestrator implements."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from ..notebook.exporter import Bundle
    from ..progress import Progress
    from ..runtime import RunContext, StepOutcome


class Orchestrator(Protocol):
    #: True where the run goes on without this process (a cluster runs it): its steps record
    #: the run's end, and this process only submits it and, when asked, follows it.
    detached: bool
    #: a detached orchestrator's run has been handed over: what happens to this process
    #: now (an error, Ctrl-C) no longer ends the run
    submitted: bool

    def check(self, bundle: Bundle) -> None:
        """Refuse a bundle this orchestrator cannot run, before the run is recorded."""
        ...

    def run(self, context: RunContext, progress: Progress) -> list[StepOutcome]:
        """Run the bundle's steps as ``context.modes`` asks; record each; return their outcomes.

        A detached orchestrator returns no outcomes when it did not wait for the run.
        One that drives the steps here stops them when the run is asked to stop (see
        ``stores.metadata.cancelling``), records it cancelled and raises :class:`RunCancelled`.
        A detached one may have ``terminate(record)``: ``pipeline cancel`` stops its runs with it.
        """
        ...


class RunCancelled(Exception):
    """The run this process drove was cancelled (``pipeline cancel``); its record says so."""

    def __init__(self, run_id: str) -> None:
        super().__init__(f"run {run_id} was cancelled")
        self.run_id = run_id
