"""Cancelling runs: the request, which crosses processes and machines, and the record of it.

Whoever cancels a run only writes a request on its record: the metadata store
is all the processes of a run share (a terminal, a notebook's kernel, the
Jupyter server, a VM, the team's database between them). The process that
drives the run reads the request within a second (:meth:`watching_for_cancel`),
stops its steps and records the run cancelled. A run no process here drives
(a Kubeflow run, a VM's) is stopped through its orchestrator by the canceller.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from datetime import datetime

from sqlalchemy import select

from ...background import repeating
from ...errors import NotFound, RunFailed
from ..models import Run, RunStatus, StepStatus, utcnow
from .connection import StoreConnection

#: How often the process driving a run looks for a request to cancel it.
CANCEL_POLL_SECONDS = 1.0
#: Why the steps a cancelled run never started did not run.
NOT_STARTED = "the run was cancelled"


class AlreadyEnded(RunFailed):
    """The run to cancel has ended already: nothing happens (HTTP 409, exit code 1)."""


class CancellingRecords(StoreConnection):
    """Requests to cancel runs, and cancelled runs."""

    def request_cancel(self, run_id: str) -> bool:
        """Ask for the run to stop (``run_id`` exact); a run that ended cannot be.

        True if a process drives it, which will stop it; False: it goes on elsewhere (a
        cluster, a VM), and its orchestrator must be told.
        """
        with self._session(write=True) as session:
            run = session.get(Run, run_id, with_for_update=True)
            if run is None:
                raise NotFound(f"no run {run_id} in the metadata store {self.label}")
            if run.status != RunStatus.RUNNING:
                raise AlreadyEnded(f"run {run_id} already {run.status}; nothing to cancel")
            run.cancel_requested_at = run.cancel_requested_at or utcnow()
            return run.runner is not None

    def cancel_requested(self, run_id: str) -> bool:
        with self._session() as session:
            requested: datetime | None = session.scalar(
                select(Run.cancel_requested_at).where(Run.id == run_id)
            )
            return requested is not None

    @contextmanager
    def watching_for_cancel(self, run_id: str, on_cancel: Callable[[], None]) -> Iterator[None]:
        """Call ``on_cancel`` (once, from another thread) if the run is asked to stop meanwhile."""
        told = False

        def look() -> None:
            nonlocal told
            if told:
                return
            try:
                wanted = self.cancel_requested(run_id)
            except Exception:  # noqa: BLE001 - the store is unreachable a moment: look again
                return
            if wanted:
                told = True
                on_cancel()

        with repeating(CANCEL_POLL_SECONDS, look, f"cancel-watch-{run_id}"):
            yield

    def run_cancelled(self, run_id: str, interrupted: Collection[str] = ()) -> None:
        """Record the run cancelled: its steps still running, or ``interrupted`` by the cancel
        (they may have been recorded failed as their kernels stopped), cancelled; those that
        never started skipped."""
        with self._session(write=True) as session:
            run = session.get(Run, run_id, with_for_update=True)
            if run is None or run.status not in (RunStatus.RUNNING, RunStatus.CANCELLED):
                return
            mark_cancelled(run, interrupted)
        self._mirror_run_ended(run_id)


def mark_cancelled(run: Run, interrupted: Collection[str] = ()) -> None:
    """``run`` (a row in a write transaction) as a cancelled run."""
    now = utcnow()
    if run.status != RunStatus.CANCELLED:
        run.status, run.ended_at = RunStatus.CANCELLED, now
        run.error = None
    run.cancel_requested_at = run.cancel_requested_at or now
    for row in run.steps:
        stopped = row.name in interrupted and row.status == StepStatus.FAILED
        if row.status == StepStatus.RUNNING or stopped:
            row.status, row.error = StepStatus.CANCELLED, None
            row.ended_at = row.ended_at or now
        elif row.status == StepStatus.PENDING:
            row.status, row.error = StepStatus.SKIPPED, NOT_STARTED
