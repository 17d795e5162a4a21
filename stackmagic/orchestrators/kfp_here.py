"""A compiled KFP pipeline run on this machine with ``kfp.local``, in a child process.

The child keeps kfp.local's global configuration and output out of a
notebook's kernel; this process follows the steps through their records,
stops the child (and its tasks) when interrupted or asked to cancel the run,
and keeps the child's log and the steps' HTML pages in the artifact store.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import StackmagicError
from ..runtime.task import failed_steps, skip_reasons
from ..stores.models import StepStatus
from .base import RunCancelled
from .following import follow, step_outcomes

if TYPE_CHECKING:
    from ..progress import Progress
    from ..runtime import RunContext, StepOutcome


def run_here(
    context: RunContext,
    progress: Progress,
    package: Path,
    arguments: dict[str, Any],
    scratch: Path,
    secrets: Mapping[str, str],
) -> list[StepOutcome]:
    """Run ``package`` with ``arguments``; ``secrets`` are the stores' secret variables."""
    log_path = scratch / "kfp-local.log"
    environment = {**os.environ, **secrets}
    command = [
        sys.executable,
        "-m",
        "stackmagic.orchestrators.kfp_local",
        str(package),
        str(scratch / "outputs"),
        json.dumps(arguments),
    ]
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=environment,
            cwd=scratch,
            start_new_session=True,
        )
        cancelled = threading.Event()

        def stop() -> None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)

        def cancel() -> None:
            cancelled.set()
            stop()

        try:
            with context.metadata.watching_for_cancel(context.run_id, cancel):
                follow(context, progress, still_going=lambda: process.poll() is None, interval=0.3)
                process.wait()
        except BaseException:  # interrupted: stop the pipeline and its tasks with us
            stop()
            process.wait()
            raise
    if cancelled.is_set():
        context.metadata.run_cancelled(context.run_id)
        raise RunCancelled(context.run_id)
    _skip_unstarted(context)
    outcomes = step_outcomes(context)
    store = context.artifact_store
    log_uri = store.uri(context.bundle.pipeline, context.run_id, "kfp-local.log")
    store.put_file(log_path, log_uri)
    for step, page in _html_outputs(package, scratch / "outputs").items():
        store.put_file(
            page, store.uri(context.bundle.pipeline, context.run_id, step, f"{step}.html")
        )
    if process.returncode != 0 and not any(o.status == StepStatus.FAILED for o in outcomes):
        tail = log_path.read_text(errors="replace").strip().splitlines()[-1:] or ["no output"]
        raise StackmagicError(
            f"kfp.local stopped before the steps ended ({tail[0]}); its log: {log_uri}"
        )
    return outcomes


def _skip_unstarted(context: RunContext) -> None:
    """Say why the steps kfp.local never started did not run.

    kfp.local stops the whole pipeline at its first failed task, so steps on
    other branches never start either: they were stopped by kfp.local, not by
    a step they depend on. Steps after the failed one name it (their tasks
    have said so, unless they broke off).
    """
    steps = context.metadata.run(context.run_id).steps
    failed = [step.name for step in steps if step.status == StepStatus.FAILED]
    unstarted = [step.name for step in steps if step.status == StepStatus.PENDING]
    if not (failed and unstarted):
        return
    stopped = f"not started: the orchestrator stopped the run after {failed_steps(failed)}"
    reasons = {**dict.fromkeys(unstarted, stopped), **skip_reasons(context, failed, unstarted)}
    context.metadata.steps_skipped(context.run_id, reasons)


def _html_outputs(package: Path, outputs: Path) -> dict[str, Path]:
    """The executed notebooks as HTML that kfp.local's tasks left, by step.

    kfp.local keeps a task's outputs under its task key (``stackmagic-step-2``);
    the compiled pipeline names each task's step (its display name).
    """
    import yaml

    spec = next(iter(yaml.safe_load_all(package.read_text(encoding="utf-8"))))
    tasks = spec["root"]["dag"]["tasks"]
    return {
        task["taskInfo"]["name"]: page
        for key, task in tasks.items()
        for page in outputs.glob(f"*/{key}/notebook")
    }
