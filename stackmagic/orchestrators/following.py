"""Following a run that goes on elsewhere (a cluster, a VM) through its records."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..stores.models import RunStatus, StepStatus

if TYPE_CHECKING:
    from ..progress import Progress
    from ..runtime import RunContext, StepOutcome
    from ..stores.metadata import MetadataStore, StepRecord


def polled(check: Callable[[], bool], every: float = 10.0) -> Callable[[], bool]:
    """``check``, asked at most once per ``every`` seconds (an API call); between, the last answer."""
    last: dict[str, Any] = {"at": 0.0, "answer": True}

    def still_going() -> bool:
        if time.monotonic() - last["at"] >= every:
            last["answer"], last["at"] = check(), time.monotonic()
        return bool(last["answer"])

    return still_going


def follow(
    context: RunContext, progress: Progress, *, still_going: Callable[[], bool], interval: float
) -> None:
    """Report step changes from the metadata store until the run ends or ``still_going`` says no."""
    shown: dict[str, str] = {}
    while True:
        going = still_going()
        record = context.metadata.run(context.run_id)
        for step in record.steps:
            if shown.get(step.name, StepStatus.PENDING) == step.status:
                continue
            if step.status == StepStatus.RUNNING:
                progress.step_started(step.name, step.reason)
            elif step.status != StepStatus.PENDING:
                if shown.get(step.name) != StepStatus.RUNNING and step.status != StepStatus.SKIPPED:
                    progress.step_started(step.name, step.reason)
                progress.step_finished(_outcome(step))
            shown[step.name] = step.status
        if record.status != RunStatus.RUNNING or not going:
            return
        time.sleep(interval)


def settle_ended(metadata: MetadataStore, run_id: str, error: str | None) -> None:
    """The orchestrator says the run ended: finish its record if its steps did not."""
    if metadata.run(run_id).status != RunStatus.RUNNING or metadata.settle_run(run_id):
        return
    metadata.run_finished(run_id, error=error)


def step_outcomes(context: RunContext) -> list[StepOutcome]:
    return [
        _outcome(step)
        for step in context.metadata.run(context.run_id).steps
        if step.status != StepStatus.PENDING
    ]


def _outcome(step: StepRecord) -> StepOutcome:
    from ..runtime import StepOutcome

    return StepOutcome(
        step.name,
        step.status,
        step.seconds or 0.0,
        step.error,
        step.notebook_uri,
        reason=step.reason,
    )
