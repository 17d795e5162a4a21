"""A step through the stack's step operator: submitted, followed, stopped, tried again.

This runs where the step would otherwise run (a worker thread of the local
orchestrator, a Kubeflow task, the VM of a cloud run), after the step found
no cached result. Each try is a job that runs ``python -m stackmagic.runtime
job`` on the step of the recorded run: it records itself as any step does.
Here the job's state and log are followed into the run's progress; a job
that ended without its step ending (an image that cannot be pulled, a spot
machine taken back) fails the step in one line with the backend's reason
and the job's page, or starts the next try under ``--retries``.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ..component_type import ComponentType
from ..errors import StackmagicError
from ..flavors import StepOperatorConfig, as_kind
from ..output import Fields
from ..progress import StepJob
from ..stores.models import StepStatus
from .base import ENDED, JobState, OperatorJob, Resources, StepOperator

if TYPE_CHECKING:
    from ..notebook.exporter import Bundle
    from ..open_stack import OpenStack
    from ..runtime import RunContext, StepOutcome
    from ..stores.metadata import StoredArtifact

#: What a stack's description calls its step operator (beside its stores).
DESCRIBED_AS = ComponentType.STEP_OPERATOR.value
#: How long a stopped job is watched for its end before the step is given up as stopped.
STOP_GRACE_SECONDS = 30.0
#: Failed looks at the backend in a row before the step is given up: one is a hiccup.
MOST_FAILED_LOOKS = 5


def operator_steps(bundle: Bundle) -> dict[str, str]:
    """Steps that name a step operator, and its name."""
    return {
        name: str(step.settings["operator"])
        for name, step in bundle.steps.items()
        if step.settings.get("operator")
    }


class StepOperatorDriver:
    """The stack's step operator, ready to run steps: its backend and the stores' description."""

    def __init__(self, backend: StepOperator[Any], stores: Mapping[str, Any]) -> None:
        self.backend = backend
        self.config = as_kind(backend.config, StepOperatorConfig)
        #: what the job gets: the stores only (the operator's own secrets stay here)
        self.stores = {kind: entry for kind, entry in stores.items() if kind != DESCRIBED_AS}

    @classmethod
    def for_stack(cls, stack: OpenStack, stores: Mapping[str, Any]) -> StepOperatorDriver | None:
        component = stack.components.get(ComponentType.STEP_OPERATOR)
        if component is None:
            return None
        config = as_kind(component.config, StepOperatorConfig)
        return cls(
            config.operator(component.name, lambda option: stack.resolve_secret(component, option)),
            stores,
        )

    @classmethod
    def from_description(cls, described: Mapping[str, Any]) -> StepOperatorDriver | None:
        """Where the pipeline runs off this machine (a Kubeflow task, a VM): the operator its
        stack description names, its secret options read now from the environment (which the
        stores' secrets are removed from before any step runs)."""
        from ..stores.portable import described_config, environment_secrets

        entry = described.get(DESCRIBED_AS)
        if not isinstance(entry, Mapping):
            return None
        config = described_config(described, ComponentType.STEP_OPERATOR, StepOperatorConfig)
        secrets = environment_secrets(config)
        return cls(config.operator(entry["name"], secrets.__getitem__), described)

    # -- before the run -------------------------------------------------------------------

    def resources(self, bundle: Bundle, step: str) -> Resources:
        return Resources.from_settings(bundle.steps[step].settings, self.config.image)

    def job(self, run_id: str, step: str, attempt: int, *, will_retry: bool) -> OperatorJob:
        return OperatorJob(
            run_id=run_id,
            step=step,
            attempt=attempt,
            will_retry=will_retry,
            stores=self.stores,
            flavor=self.config.flavor,
            secret=self.backend.secret_location(),
        )

    def requests(self, bundle: Bundle, run_id: str) -> dict[str, dict[str, Any]]:
        """Each operator step's first request, asking the backend nothing; refuses what cannot
        run (no image, a machine type too small) in one line, before anything is recorded."""
        made = {}
        for step in operator_steps(bundle):
            resources = self.resources(bundle, step)
            if not resources.image:
                raise StackmagicError(
                    f"step {step!r} runs on step operator {self.backend.name!r}, which has no "
                    f"container image: give the operator --image (`stackmagic step-operator "
                    f"update {self.backend.name} --image=IMAGE`) or the step --image IMAGE"
                )
            self.backend.check(resources)
            job = self.job(run_id, step, 1, will_retry=False)
            made[step] = self.backend.request(job, resources, look_up=False)
        return made

    def preview(self, bundle: Bundle, run_id: str) -> Fields:
        """What ``pipeline run --dry-run`` shows of the operator steps."""
        import json

        made = self.requests(bundle, run_id)
        return Fields(
            f"{self.config.flavor} step operator {self.backend.name!r} would run "
            f"{len(made)} step{'s' if len(made) != 1 else ''} as jobs",
            [
                (f"{step} job request", json.dumps(request, indent=2))
                for step, request in made.items()
            ],
            {"step_operator": self.backend.name, "requests": made},
            stacked=True,
        )

    # -- during the run -------------------------------------------------------------------

    def run(
        self,
        context: RunContext,
        step: str,
        *,
        attempts: Sequence[int],
        will_retry: bool,
        reason: str,
        code_key: str,
        parts: Mapping[str, Any],
        inputs: Mapping[str, StoredArtifact],
        stopped: Callable[[], bool],
    ) -> StepOutcome:
        """Run the step's tries as jobs until one ends the step; record what the jobs could not."""
        from ..runtime import INTERRUPTED, StepOutcome

        started = time.perf_counter()
        resources = self.resources(context.bundle, step)
        metadata, run_id, flavor = context.metadata, context.run_id, self.config.flavor
        error = "no try ran"
        for number in attempts:
            more = number != attempts[-1]
            job = self.job(run_id, step, number, will_retry=more or will_retry)
            metadata.step_started(
                run_id, step, code_key=code_key, attempt=number, parts=parts, reason=reason
            )
            try:
                state, job_id, url = self._try(context, step, job, resources, stopped)
            except StackmagicError as failure:  # the backend refused the job, or went away
                metadata.step_failed(
                    run_id, step, error=str(failure), notebook_uri=None, inputs=inputs
                )
                return StepOutcome(
                    step,
                    StepStatus.FAILED,
                    time.perf_counter() - started,
                    str(failure),
                    reason=reason,
                )
            seconds = time.perf_counter() - started
            if state is None:  # stopped from here: a cancel or Ctrl-C, recorded as the kernels'
                metadata.step_failed(
                    run_id, step, error=INTERRUPTED, notebook_uri=None, inputs=inputs
                )
                return StepOutcome(step, StepStatus.FAILED, seconds, INTERRUPTED, reason=reason)
            record = metadata.run(run_id).step(step)
            where = f"{flavor} job {job_id}: {url}"
            if record.status == StepStatus.COMPLETED:
                return StepOutcome(
                    step, record.status, seconds, notebook_uri=record.notebook_uri, reason=reason
                )
            if record.status == StepStatus.FAILED:  # its code failed, and it said why
                return StepOutcome(
                    step,
                    StepStatus.FAILED,
                    seconds,
                    f"{record.error} ({where})",
                    record.notebook_uri,
                    reason=reason,
                )
            # the job recorded that its code failed and waits for the next try, or it ended
            # without its step ending (the step still shows running): said here
            told = record.status == StepStatus.PENDING and bool(record.error)
            if told:
                error = f"{record.error} ({where})"
            else:
                lost = "interrupted" if state.interrupted else state.phase
                error = f"{flavor} job {job_id} {lost}: {state.reason or 'no reason given'} ({url})"
            if more:
                if not told:
                    metadata.step_retrying(
                        run_id, step, error=f"try {number} failed: {error}", notebook_uri=None
                    )
                _note(context, f"{step}: try {number} failed: {error}; starting try {number + 1}")
            elif will_retry:  # the orchestrator retries the task that runs this
                if not told:
                    metadata.step_retrying(run_id, step, error=error, notebook_uri=None)
            else:
                metadata.step_failed(run_id, step, error=error, notebook_uri=None, inputs=inputs)
        return StepOutcome(
            step, StepStatus.FAILED, time.perf_counter() - started, error, reason=reason
        )

    def _try(
        self,
        context: RunContext,
        step: str,
        job: OperatorJob,
        resources: Resources,
        stopped: Callable[[], bool],
    ) -> tuple[JobState | None, str, str]:
        """One job, submitted and followed to its end: its state (None: stopped from here),
        id and page. A job that cannot be followed any more is stopped, as far as it can be."""
        job_id, url = self.backend.submit(job, self.backend.request(job, resources))
        context.metadata.step_job(context.run_id, step, job_id=job_id, url=url)
        if context.on_progress is not None:
            context.on_progress("job", StepJob(step, self.config.flavor, job_id, url, job.attempt))
        try:
            return self._follow(context, step, job_id, stopped), job_id, url
        except StackmagicError as failure:
            with contextlib.suppress(StackmagicError):
                self.backend.stop(job_id)
            raise StackmagicError(f"{failure} ({self.config.flavor} job {job_id}: {url})") from None

    def _follow(
        self, context: RunContext, step: str, job_id: str, stopped: Callable[[], bool]
    ) -> JobState | None:
        """Show the job's log until it ends; None if the run stopped it first."""
        cursor: Any = None
        failed_looks = 0
        interval = self.config.poll_seconds
        while True:
            try:
                state = self.backend.state(job_id)
                lines, cursor = self.backend.logs(job_id, cursor)
                failed_looks = 0
            except StackmagicError as error:
                failed_looks += 1
                if failed_looks >= MOST_FAILED_LOOKS:
                    raise
                _note(context, f"{step}: cannot follow the job now ({error}); trying again")
                lines, state = [], JobState("unknown")
            for line in lines:
                _note(context, f"{step} | {line}")
            if state.phase in ENDED:
                return state
            if _waited_for(stopped, interval, context):
                self._stop(job_id)
                return None

    def _stop(self, job_id: str) -> None:
        """Stop the job and see it end, so the step is not left running somewhere."""
        self.backend.stop(job_id)
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        while time.monotonic() < deadline:
            if self.backend.state(job_id).phase in ENDED:
                return
            time.sleep(min(1.0, self.config.poll_seconds))


def _waited_for(stopped: Callable[[], bool], seconds: float, context: RunContext) -> bool:
    """Wait ``seconds``; True as soon as the run is stopped here, or if it was asked to cancel
    (asked once a wait: where no orchestrator watches for it, a Kubeflow task say)."""
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        if stopped():
            return True
        time.sleep(min(left, 0.5))
    return stopped() or context.metadata.cancel_requested(context.run_id)


def _note(context: RunContext, line: str) -> None:
    if context.on_progress is not None:
        context.on_progress("note", line)


def prepared_operator(bundle: Bundle, stack: OpenStack, run_id: str) -> StepOperatorDriver | None:
    """The stack's step operator for the bundle's steps that name it, their requests checked;
    None when no step names one. Refuses, in one line, a step the stack cannot serve."""
    from ..stores.portable import describe_stores

    wanted = operator_steps(bundle)
    if not wanted:
        return None
    component = stack.components.get(ComponentType.STEP_OPERATOR)
    check_operator_steps(wanted, component.name if component else None, stack.name)
    driver = StepOperatorDriver.for_stack(stack, describe_stores(stack.name, stack.components))
    assert driver is not None  # the stack has one: checked above
    driver.requests(bundle, run_id)
    return driver


def check_operator_steps(wanted: Mapping[str, str], operator: str | None, stack: str) -> None:
    """Refuse a step whose step operator the stack does not have, in one line."""
    for step, name in wanted.items():
        if operator is None:
            raise StackmagicError(
                f"step {step!r} runs on step operator {name!r}, but stack {stack!r} has no "
                f"step operator: register one and add it (`stackmagic step-operator register "
                f"{name} --type=...`, then `stackmagic stack update {stack} -s {name}`)"
            )
        if operator != name:
            raise StackmagicError(
                f"step {step!r} runs on step operator {name!r}, but stack {stack!r} has "
                f"{operator!r}: change the step's --operator, or the stack's "
                f"(`stackmagic stack update {stack} -s {name}`)"
            )
