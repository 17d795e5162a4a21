"""One step of a recorded run as a step operator's job: what the job's container runs.

``python -m stackmagic.runtime job DESCRIPTION`` gets everything from the
description (it holds no secret): the run, the step and its try, the
stores' description and where their secrets wait. The secrets are read with
the job's own identity (or are in its environment already, from a
Kubernetes secret), the step runs here on a kernel of its own, and records
itself as a step on any orchestrator does; whoever submitted the job
follows it and reads the record.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..operators import backend_class
from ..operators.base import OperatorJob
from ..scratch import ScratchFolder
from ..stores.models import StepStatus
from ..stores.portable import open_stores, wanted_secrets
from . import StepOutcome, recorded_context
from .task import forget_secrets, run_on_own_kernel


def run_job(job: OperatorJob) -> StepOutcome:
    """Run the job's try of its step; a step that ended already is left as it is."""
    from ..pipelines import fetch_bundle

    if job.secret:
        text = backend_class(job.flavor).read_secret(job.secret)
        os.environ.update(wanted_secrets(str(job.secret.get("name", "")), text, job.stores))
    artifact_store, metadata = open_stores(job.stores)
    forget_secrets(job.stores)  # the stores have them; the step's code must not
    try:
        record = metadata.run(job.run_id)
        kept = record.step(job.step)
        if kept.status in StepStatus.WITH_OUTPUTS:  # a job started twice: the first one did it
            return StepOutcome(job.step, kept.status, 0.0, notebook_uri=kept.notebook_uri)
        with ScratchFolder("bundle") as scratch:
            bundle = fetch_bundle(artifact_store, record.bundle_uri, Path(scratch))
            context = recorded_context(record, bundle, artifact_store, metadata)
            context.echo_output = True
            print(
                f"stackmagic: step {job.step!r} of run {job.run_id} (try {job.attempt})",
                flush=True,
            )
            return run_on_own_kernel(
                context, job.step, attempt=job.attempt, will_retry=job.will_retry
            )
    finally:
        metadata.close()
