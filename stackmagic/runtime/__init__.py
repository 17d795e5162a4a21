"""What runs where a step runs: one step of a bundle, from its inputs to its recorded outputs.

Every orchestrator uses :func:`run_step`: the local one calls it in-process
with a pool of started kernels, remote ones run ``python -m stackmagic.runtime``
(see ``__main__.py``).
A step first looks for a cached result (same code, parameters, settings and
input contents, see ``cache.py``); otherwise it says why it runs, its notebook
runs under papermill, the executed
notebook is kept in the artifact store, and the outputs, metrics and status
go to the metadata store.
"""

from __future__ import annotations

import contextlib
import secrets
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..deferred_imports import defer_slow_imports
from ..errors import StackmagicError
from ..notebook.exporter import CONTEXT_VARIABLE, Bundle, failed_cell
from ..scratch import ScratchFolder
from ..stores.artifacts import ArtifactInfo, ArtifactStore
from ..stores.metadata import MetadataStore, MetricPoint, RunRecord, StoredArtifact
from ..stores.models import StepStatus
from . import files
from .cache import (
    NO_CACHE,
    StepInputs,
    cache_key,
    code_key,
    find_hit,
    gather_inputs,
    step_parts,
    why_it_runs,
)
from .dag import downstream, upstream

if TYPE_CHECKING:
    from ..operators.driving import StepOperatorDriver
    from ..orchestrators.kernels import KernelPool


#: The error of a step whose run stopped it (Ctrl-C, a cancel) before it ended.
INTERRUPTED = "interrupted"


class Mode:
    """How a step takes part in a run."""

    RUN = "run"  # run it, or reuse a cached result
    FORCE = "force"  # run it even if a cached result exists (--only, --from)
    CACHED = "cached"  # must come from the cache: it feeds a step of --only/--from
    SKIP = "skip"  # not needed by this run


@dataclass
class RunContext:
    """Everything about one run that the steps of the bundle share."""

    run_id: str
    bundle: Bundle
    artifact_store: ArtifactStore
    metadata: MetadataStore
    #: where steps run: the notebook's folder here, the bundle's sources elsewhere
    workdir: Path
    overrides: dict[str, Any] = field(default_factory=dict)
    no_cache: bool = False
    modes: dict[str, str] = field(default_factory=dict)
    only: str | None = None
    from_step: str | None = None
    #: where the bundle is kept in the artifact store, for steps that fetch it themselves
    bundle_uri: str = ""
    #: a run carried on after its machine was lost: steps it finished before are kept
    resumed: bool = False
    #: a remote orchestrator's run: follow it to its end (True), or only submit it
    wait: bool = False
    #: the stack's step operator, for steps that name it; None inside its jobs
    step_operator: StepOperatorDriver | None = None
    #: runs each step that names no step operator as a job of its own (the kubernetes
    #: orchestrator's pod per step); None: those steps run on kernels here
    step_jobs: StepOperatorDriver | None = None
    #: where news for the run's progress goes, from any thread: ("note", a line of a step
    #: operator's log) or ("job", StepJob) when a step's try starts as a job
    on_progress: Callable[[str, Any], None] | None = None
    #: what steps print goes to this process's output as it comes: a job's log shows it
    echo_output: bool = False

    @property
    def parameters(self) -> dict[str, Any]:
        return {**self.bundle.parameters, **self.overrides}

    def driver_for(self, step: str) -> StepOperatorDriver | None:
        """What runs ``step`` as a job elsewhere; None: a kernel here runs it."""
        if self.bundle.steps[step].settings.get("operator"):
            return self.step_operator
        return self.step_jobs


@dataclass
class StepOutcome:
    step: str
    status: str
    seconds: float
    error: str | None = None
    notebook_uri: str | None = None
    #: why it ran rather than came from the cache ("code changed (cell 7)")
    reason: str | None = None
    #: What the step found wrong but not fatal: an input changed in a way its code does not show.
    warnings: list[str] = field(default_factory=list)


def overrides_that_change(given: Mapping[str, Any], defaults: Mapping[str, Any]) -> list[str]:
    """The given parameters that change the notebook's values: what the run is recorded with.

    A value given equal to its default, and of its type, changes nothing a step
    computes; the run lists it neither as changed nor among the values it passes on.
    """
    return [
        name
        for name, value in given.items()
        if name not in defaults
        or type(value) is not type(defaults[name])
        or value != defaults[name]
    ]


def recorded_context(
    record: RunRecord,
    bundle: Bundle,
    artifact_store: ArtifactStore,
    metadata: MetadataStore,
    bundle_uri: str = "",
) -> RunContext:
    """The context of a run as its record says, for a process that carries on a recorded run."""
    options = record.options
    return RunContext(
        run_id=record.id,
        bundle=bundle,
        artifact_store=artifact_store,
        metadata=metadata,
        workdir=bundle.sources,
        overrides={name: record.parameters[name] for name in record.overridden},
        no_cache=bool(options.get("no_cache")),
        modes=plan(bundle, only=options.get("only"), from_step=options.get("from")),
        only=options.get("only"),
        from_step=options.get("from"),
        bundle_uri=bundle_uri or record.bundle_uri,
    )


def new_run_id() -> str:
    """Sortable and unique: ``20261127-081523-3fa9c1``."""
    return f"{datetime.now(timezone.utc):%Y%m%d-%H%M%S}-{secrets.token_hex(3)}"


def plan(
    bundle: Bundle, *, only: str | None = None, from_step: str | None = None
) -> dict[str, str]:
    """Each step's :class:`Mode` for a whole run, ``--only STEP`` or ``--from STEP``."""
    steps = bundle.steps
    for flag, name in (("--only", only), ("--from", from_step)):
        if name is not None and name not in steps:
            raise StackmagicError(
                f"{flag} {name}: the pipeline has no such step (steps: {', '.join(steps)})"
            )
    if only is not None and from_step is not None:
        raise StackmagicError("give --only or --from, not both")
    if only is not None:
        forced = {only}
    elif from_step is not None:
        forced = {from_step, *downstream(steps, from_step)}
    else:
        return dict.fromkeys(steps, Mode.RUN)
    needed = {step for name in forced for step in upstream(steps, name)} - forced
    return {
        name: Mode.FORCE if name in forced else Mode.CACHED if name in needed else Mode.SKIP
        for name in steps
    }


def step_inputs(context: RunContext, step: str) -> StepInputs:
    """What a step reads, as the steps before it left it in this run (see ``cache.gather_inputs``)."""
    steps = context.bundle.steps
    return gather_inputs(
        context.bundle, step, context.metadata.steps_outputs(context.run_id, upstream(steps, step))
    )


def remove_leftovers(context: RunContext, step: str | None = None) -> None:
    """Remove the temporary files of artifacts that kernels stopped half way through saving
    (an interrupted run) from the run's folder, or one step's: once those kernels are stopped."""
    store = context.artifact_store
    folder = store.uri(context.bundle.pipeline, context.run_id, *([step] if step else []))
    with contextlib.suppress(StackmagicError):  # the store is out of reach: `stackmagic gc` later
        store.remove_temporaries(folder)


def may_use_cache(context: RunContext, step: str) -> bool:
    mode = context.modes.get(step, Mode.RUN)
    if mode == Mode.CACHED:
        return True
    return mode == Mode.RUN and not context.no_cache and not context.bundle.steps[step].no_cache


def run_step(
    context: RunContext,
    step: str,
    *,
    kernel_pool: KernelPool,
    on_start: Callable[[str, str], None] | None = None,
    attempt: int | None = None,
    will_retry: bool = False,
) -> StepOutcome:
    """Run (or reuse) one step of the run and record what happened.

    The step is tried ``--retries`` more times if it fails, unless ``attempt``
    is given: then the orchestrator retries (a new pod), and this is that try;
    if it fails and ``will_retry``, the step is recorded as waiting for the
    next try, not failed, so the run is not finished meanwhile. A step that
    runs says why (``on_start`` hears it too): see :mod:`.cache`.
    """
    started = time.perf_counter()
    spec = context.bundle.steps[step]
    given = step_inputs(context, step)
    inputs = given.artifacts
    parts = step_parts(context.bundle, step, context.parameters, given)
    code, key = code_key(parts), cache_key(parts)
    if context.resumed:
        kept = context.metadata.run(context.run_id).step(step)
        if kept.status in StepStatus.WITH_OUTPUTS and kept.cache_key == key:
            return StepOutcome(
                step, kept.status, kept.seconds or 0.0, notebook_uri=kept.notebook_uri
            )
    gone = None
    if may_use_cache(context, step):
        found = find_hit(context.metadata, context.artifact_store, key, other_than=context.run_id)
        if found.hit is not None:
            if (
                context.workdir != context.bundle.sources
            ):  # the notebook's folder: as a run leaves it
                files.put_in_place(
                    context.artifact_store,
                    context.workdir,
                    files.file_outputs(
                        {name: artifact.info for name, artifact in found.hit.outputs.items()}
                    ),
                )
            context.metadata.step_cached(
                context.run_id,
                step,
                code_key=code,
                cache_key=key,
                hit=found.hit,
                inputs=inputs,
                parts=parts,
            )
            return StepOutcome(step, StepStatus.CACHED, time.perf_counter() - started)
        if context.modes.get(step) == Mode.CACHED:
            uncached = (
                f"step {step!r} has no cached result for this code, these parameters and inputs, "
                "so the steps after it cannot start from it; run the pipeline without --only/--from"
            )
            context.metadata.step_failed(
                context.run_id, step, error=uncached, notebook_uri=None, inputs=inputs
            )
            return StepOutcome(step, StepStatus.FAILED, time.perf_counter() - started, uncached)
        gone = found.gone
    reason = _forced(context, step) or why_it_runs(
        context.metadata, context.bundle.pipeline, step, parts, gone, other_than=context.run_id
    )
    if on_start is not None:
        on_start(step, reason)
    attempts = [attempt] if attempt else range(1, int(spec.settings.get("retries", 0)) + 2)
    if (driver := context.driver_for(step)) is not None:
        return driver.run(
            context,
            step,
            attempts=list(attempts),
            will_retry=will_retry,
            reason=reason,
            code_key=code,
            parts=parts,
            inputs=inputs,
            stopped=lambda: kernel_pool.stopped,
        )
    for number in attempts:
        context.metadata.step_started(
            context.run_id, step, code_key=code, attempt=number, parts=parts, reason=reason
        )
        notebook_uri, result, error = _execute(context, step, inputs, kernel_pool)
        if error is None and notebook_uri is not None:
            context.metadata.step_completed(
                context.run_id,
                step,
                code_key=code,
                cache_key=key,
                inputs=inputs,
                outputs={n: ArtifactInfo.from_json(i) for n, i in result["outputs"].items()},
                metrics=[_metric_point(*metric) for metric in result["metrics"]],
                notebook_uri=notebook_uri,
            )
            return StepOutcome(
                step,
                StepStatus.COMPLETED,
                time.perf_counter() - started,
                notebook_uri=notebook_uri,
                reason=reason,
                warnings=list(result.get("warnings", [])),
            )
    if will_retry:
        context.metadata.step_retrying(
            context.run_id, step, error=f"try {attempt} failed: {error}", notebook_uri=notebook_uri
        )
    else:
        context.metadata.step_failed(
            context.run_id, step, error=str(error), notebook_uri=notebook_uri, inputs=inputs
        )
    return StepOutcome(
        step, StepStatus.FAILED, time.perf_counter() - started, error, notebook_uri, reason=reason
    )


def _metric_point(
    name: str, value: float, step: int | None = None, logged_at: float | None = None
) -> MetricPoint:
    """A metric as the step's kernel sent it: its time in seconds since the epoch."""
    when = None if logged_at is None else datetime.fromtimestamp(logged_at, timezone.utc)
    return MetricPoint(str(name), float(value), step, when)


def _forced(context: RunContext, step: str) -> str | None:
    """Why a step runs whatever the cache holds: the run or the step said so."""
    if context.modes.get(step) == Mode.FORCE:
        return "forced by --only" if context.only is not None else "forced by --from"
    if context.no_cache or context.bundle.steps[step].no_cache:
        return NO_CACHE
    return None


def _execute(
    context: RunContext, step: str, inputs: Mapping[str, StoredArtifact], kernel_pool: KernelPool
) -> tuple[str | None, dict[str, Any], str | None]:
    """Run the step's notebook; returns the executed notebook's URI, the result, and an error."""
    defer_slow_imports()
    import papermill
    from papermill.exceptions import PapermillExecutionError

    from ..step_io import RESULT_MIME_TYPE

    store = context.artifact_store
    bundle = context.bundle
    values = {name: a for name, a in inputs.items() if not name.startswith(files.FILE_PREFIX)}
    step_context = {
        "run": context.run_id,
        "step": step,
        "store": store.describe(),
        "inputs": {name: artifact.info.to_json() for name, artifact in values.items()},
        "outputs": store.uri(bundle.pipeline, context.run_id, step),
        "readers": {
            name: [other for other, spec in bundle.steps.items() if spec.inputs.get(name) == step]
            for name in bundle.steps[step].outputs
        },
    }
    error: str | None = None
    files.put_in_place(
        store,
        context.workdir,
        files.file_outputs({name: artifact.info for name, artifact in inputs.items()}),
    )
    by_setup = kernel_pool.written_by_setup(context.workdir)
    before = files.snapshot(context.workdir, skip=[Path(store.root)])
    with files.watching(context.workdir) as ran_alone, ScratchFolder("step") as scratch:
        executed_path = Path(scratch) / f"{step}.ipynb"
        try:
            executed = papermill.execute_notebook(
                str(bundle.step_notebook(step)),
                str(executed_path),
                parameters={**context.overrides, CONTEXT_VARIABLE: step_context},
                engine_name="stackmagic",
                kernel_name=bundle.manifest["kernel"],
                kernel_pool=kernel_pool,  # its kernels start in the workdir: no papermill cwd,
                # which is a process-wide chdir that steps running at once would race on
                step_variables={CONTEXT_VARIABLE: step_context},  # for a forked kernel
                progress_bar=False,
                request_save_on_cell_execute=False,
                **(
                    {"stdout_file": sys.stdout, "stderr_file": sys.stderr}
                    if context.echo_output
                    else {}
                ),
            )
        except PapermillExecutionError as failure:
            import nbformat

            where = failed_cell(nbformat.read(executed_path, as_version=4))
            error = f"{failure.ename}: {failure.evalue} (in {where})"
            executed = None
        except Exception as failure:  # the kernel died, timed out, never started, or was stopped
            if kernel_pool.stopped:
                error = INTERRUPTED
            elif isinstance(failure, StackmagicError):
                error = str(failure)
            else:
                error = f"{type(failure).__name__}: {failure}"
            executed = None
        alone = ran_alone()
        notebook_uri = None
        if executed_path.exists():
            uri = store.uri(bundle.pipeline, context.run_id, step, f"{step}.ipynb")
            try:
                store.put_file(executed_path, uri)
                notebook_uri = uri
            except StackmagicError as failure:  # a full disk, say: the step failed all the same
                unsaved = _unsaved("its executed notebook", uri, failure)
                error = f"{error}; and {unsaved}" if error else unsaved
    if error is not None or notebook_uri is None:
        return notebook_uri, {}, error or "papermill wrote no executed notebook"
    for output in executed.cells[-1].get("outputs", []):
        result = output.get("data", {}).get(RESULT_MIME_TYPE)
        if result is not None:
            after = files.snapshot(context.workdir, skip=[Path(store.root)])
            written = files.written(before, after)
            written = sorted({*written, *(path for path in by_setup if path in after)})
            if not alone:
                claimed = set(result.get("written", []))
                written = [path for path in written if str(context.workdir / path) in claimed]
            location = f"{step_context['outputs']}/files"
            try:
                kept = files.keep(store, context.workdir, written, location)
            except StackmagicError as failure:
                return notebook_uri, {}, _unsaved("the files it wrote", location, failure)
            result["outputs"].update({name: info.to_json() for name, info in kept.items()})
            return notebook_uri, result, None
    return notebook_uri, {}, "the step's outputs cell reported nothing (was the notebook changed?)"


def _unsaved(what: str, uri: str, failure: StackmagicError) -> str:
    """Why a step whose code ran failed: the artifact store could not keep what it made."""
    return f"could not save {what} to {uri}: {failure}"
