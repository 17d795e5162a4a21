"""Cancelling a run, wherever it runs: ``stackmagic pipeline cancel``, ``%pipeline cancel``, REST.

A run a process drives (a terminal's ``pipeline run``, a notebook's kernel,
the Jupyter server) is asked to stop through the metadata store: that process
stops its step kernels within a second and records the run cancelled. A run
that goes on elsewhere (a Kubeflow run, a VM's) is stopped here through its
orchestrator (the KFP run terminated, the VM deleted) and recorded cancelled.
"""

from __future__ import annotations

import time
from contextlib import ExitStack
from typing import TYPE_CHECKING

from ..component_type import ComponentType
from ..errors import RunFailed, StackmagicError
from ..stores.models import RunStatus

if TYPE_CHECKING:
    from ..open_stack import OpenStack
    from ..stores.metadata import RunRecord

#: How long ``pipeline cancel`` waits for the process driving a run to record it cancelled.
STOP_TIMEOUT_SECONDS = 60.0


def cancel_run(opened: OpenStack, run_id: str, *, wait: bool = True) -> RunRecord:
    """Cancel the run ``run_id`` names (a unique beginning, or ``latest``); its record after.

    With ``wait``, returns once the run is recorded cancelled; else once it has been asked
    to stop (a run stopped here through its orchestrator is recorded cancelled either way).
    """
    metadata = opened.metadata
    record = metadata.run(run_id)
    driven = metadata.request_cancel(record.id)
    if not driven:
        # read again: a submission recorded by now is stopped here; one recorded later is
        # stopped by its launcher, which looks for a request once it has recorded it
        _stop_elsewhere(opened, metadata.run(record.id))
        metadata.run_cancelled(record.id)
    elif wait:
        _wait_for_stop(opened, record.id)
    return metadata.run(record.id)


def _stop_elsewhere(opened: OpenStack, record: RunRecord) -> None:
    """Tell the run's orchestrator to stop it: through the stack it ran on, if it is here."""
    from ..open_stack import OpenStack
    from ..registry import Registry

    if not record.orchestrator_run_id:
        return  # not submitted yet: its launcher sees the request once it has submitted it
    recorded = record.stack.get(ComponentType.ORCHESTRATOR.value, {})
    with ExitStack() as stack:
        ran_on = opened
        registry = Registry.open()
        if record.stack_name != opened.name and any(
            s.name == record.stack_name for s in registry.stacks()
        ):
            ran_on = stack.enter_context(OpenStack.open(registry, record.stack_name))
        config = ran_on.orchestrator_config
        if config.flavor != recorded.get("flavor"):
            raise StackmagicError(
                f"run {record.id} ran on the {recorded.get('flavor')} orchestrator of stack "
                f"{record.stack_name!r}, which is not registered here: register it (or give "
                f"--stack with a {recorded.get('flavor')} orchestrator) to cancel the run"
            )
        terminate = getattr(config.orchestrator(ran_on), "terminate", None)
        if terminate is not None:
            terminate(record)


def _wait_for_stop(opened: OpenStack, run_id: str) -> None:
    """Until the process driving the run has stopped it and recorded how it ended."""
    deadline = time.monotonic() + STOP_TIMEOUT_SECONDS
    while (status := opened.metadata.run(run_id).status) == RunStatus.RUNNING:
        if time.monotonic() > deadline:
            raise StackmagicError(
                f"run {run_id} was asked to stop but still runs after {STOP_TIMEOUT_SECONDS:.0f} s"
                f"; `stackmagic pipeline describe {run_id}` shows when it ends"
            )
        time.sleep(0.3)
    if status != RunStatus.CANCELLED:
        raise RunFailed(f"run {run_id} {status} before it could be cancelled")
