"""The interface every orchestrator implements."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from ..notebook.exporter import Bundle
    from ..progress import Progress
    from ..runtime import RunContext, StepOutcome


class Orchestrator(Protocol):
    def check(self, bundle: Bundle) -> None:
        """Refuse a bundle this orchestrator cannot run, before the run is recorded."""
        ...

    def run(self, context: RunContext, progress: Progress) -> list[StepOutcome]:
        """Run the bundle's steps as ``context.modes`` asks; record each; return their outcomes."""
        ...
