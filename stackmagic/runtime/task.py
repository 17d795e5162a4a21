"""One step as a task of a remote orchestrator's run: a Kubeflow pod, say.

The task knows only what the compiled pipeline gave it: the bundle's URI, the
stores' description (secrets come from its environment), the run's
parameters and options. The first task of a run to start records the run if
nobody has (a run started from the Kubeflow UI); each task records its step;
the last one to end finishes the run. A failed step marks the steps after it
skipped, since the orchestrator will not start them.
"""

from __future__ import annotations

import ast
import contextlib
import json
import os
import sys
from collections.abc import Collection, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import NotFound, RunFailed
from ..exiting import leave_memory_to_exit
from ..json_values import is_finite
from ..operators.driving import StepOperatorDriver
from ..progress import StepJob
from ..scratch import ScratchFolder
from ..stores.models import StepStatus
from ..stores.portable import open_stores, referenced_variables
from . import (
    Mode,
    RunContext,
    StepOutcome,
    overrides_that_change,
    recorded_context,
    remove_leftovers,
    run_step,
)
from .dag import downstream

if TYPE_CHECKING:
    from ..notebook.exporter import Bundle
    from ..stores.artifacts import ArtifactStore
    from ..stores.metadata import MetadataStore

#: Why a step that ``--only`` or ``--from`` leaves out is skipped.
NOT_NEEDED = "not needed by this run"


def run_task(
    *,
    step: str,
    run_id: str,
    bundle_uri: str,
    stores: Mapping[str, Any],
    parameters: Mapping[str, Any],
    options: Mapping[str, Any],
    html_path: str | None = None,
) -> None:
    """Run ``step`` of run ``run_id``; raise :class:`RunFailed` if it failed, so the task fails."""
    from ..pipelines import fetch_bundle

    artifact_store, metadata = open_stores(stores)
    step_operator = StepOperatorDriver.from_description(stores)
    forget_secrets(stores)  # the stores have them; the step's own code must not
    try:
        with ScratchFolder("bundle") as scratch:
            bundle_uri = _recorded_bundle(metadata, run_id) or bundle_uri
            bundle = fetch_bundle(artifact_store, bundle_uri, Path(scratch))
            context = _context(
                run_id, bundle, bundle_uri, artifact_store, metadata, stores, parameters, options
            )
            context.step_operator = step_operator
            context.on_progress = _to_log  # the task's log
            try:
                notebook_uri = _run(context, step)
            except BaseException as failure:  # recorded, so the run does not look busy forever
                _failed(context, step, failure)
                raise
            finally:
                metadata.settle_run(run_id)
            _write_html(html_path, artifact_store, notebook_uri, step)
    finally:
        metadata.close()
        leave_memory_to_exit()  # the task's process ends when this returns


def _recorded_bundle(metadata: MetadataStore, run_id: str) -> str:
    """The bundle a recorded run started with, which wins over the task's: an Airflow DAG
    file that a later ``pipeline run`` rewrote while this run's tasks waited names a newer one."""
    with contextlib.suppress(NotFound):
        return metadata.run(run_id).bundle_uri
    return ""


def _context(
    run_id: str,
    bundle: Bundle,
    bundle_uri: str,
    artifact_store: ArtifactStore,
    metadata: MetadataStore,
    stores: Mapping[str, Any],
    parameters: Mapping[str, Any],
    options: Mapping[str, Any],
) -> RunContext:
    """The run as its record says; recorded first if no one has (a run started from a KFP UI)."""
    only, from_step = options.get("only") or None, options.get("from") or None
    no_cache = str(options.get("no_cache")).lower() in ("true", "1")  # KFP gives text
    names = set(bundle.parameter_names)
    known = {name: value for name, value in parameters.items() if name in names}
    values = typed_parameters(bundle.parameters, known)  # Airflow mixes a run's conf in
    overrides = {
        name: value for name, value in values.items() if bundle.parameters.get(name) != value
    }
    metadata.create_run(
        run_id=run_id,
        pipeline=bundle.pipeline,
        notebook=bundle.manifest["notebook"],
        stack_name=str(stores.get("stack", "")),
        stack=_snapshot(stores),
        bundle_uri=bundle_uri,
        bundle_hash=bundle.hash,
        options={"no_cache": no_cache, "only": only, "from": from_step},
        parameters={**bundle.parameters, **overrides},
        overridden=overrides_that_change(overrides, bundle.parameters),
        steps=list(bundle.steps),
        driven_here=False,
        exist_ok=True,
        schedule=options.get("schedule") or None,
    )
    record = metadata.run(run_id)  # whoever recorded it first: its values, exactly typed
    return recorded_context(record, bundle, artifact_store, metadata, bundle_uri)


def _run(context: RunContext, step: str) -> str | None:
    """Run the step (one try of it); the executed notebook's URI. Raises if it failed."""
    metadata, run_id = context.metadata, context.run_id
    previous = metadata.run(run_id).step(step)
    if context.modes[step] == Mode.SKIP:
        metadata.steps_skipped(run_id, {step: NOT_NEEDED})
        return None
    if previous.status in StepStatus.WITH_OUTPUTS:  # a pod started again after the step ended
        return previous.notebook_uri
    attempt = previous.attempts + 1
    retries = int(context.bundle.steps[step].settings.get("retries", 0))
    # a step that must come from the cache fails the same way every time: no retry
    will_retry = attempt <= retries and context.modes[step] != Mode.CACHED
    outcome = run_on_own_kernel(context, step, attempt=attempt, will_retry=will_retry)
    if outcome.status != StepStatus.FAILED:
        return outcome.notebook_uri
    if will_retry:
        raise RunFailed(f"step {step!r} failed (try {attempt}, to be retried): {outcome.error}")
    _skip_after(context, step)
    raise RunFailed(f"step {step!r} of run {run_id} failed: {outcome.error}")


def run_on_own_kernel(
    context: RunContext, step: str, *, attempt: int | None = None, will_retry: bool = False
) -> StepOutcome:
    """:func:`run_step` in a process that runs this one step, on a kernel of its own.

    The kernel starts as soon as the step is known to execute (not when a
    cached result serves it), so it boots on one core while papermill loads
    on the other, rather than after it.
    """
    from ..orchestrators.kernels import MANAGERS, KernelPool, import_in_one_thread

    pool = KernelPool(
        context.bundle.manifest["kernel"],
        context.workdir,
        context.artifact_store.secret_environment(),
    )

    def start_kernel(step: str, reason: str) -> None:
        import_in_one_thread(MANAGERS)  # here, before papermill: see import_in_one_thread
        pool.reserve(1)

    try:
        return run_step(
            context,
            step,
            kernel_pool=pool,
            on_start=start_kernel,
            attempt=attempt,
            will_retry=will_retry,
        )
    finally:
        pool.close()
        remove_leftovers(context, step)


def _to_log(kind: str, news: Any) -> None:
    """A step operator's news, as lines of the task's log."""
    print(news.line() if isinstance(news, StepJob) else news, flush=True)


def _failed(context: RunContext, step: str, failure: BaseException) -> None:
    """A step that broke off before recording its end (its store went away, say) is failed now."""
    if isinstance(failure, RunFailed):  # recorded already
        return
    with contextlib.suppress(Exception):
        if context.metadata.run(context.run_id).step(step).status in (
            StepStatus.PENDING,
            StepStatus.RUNNING,
        ):
            context.metadata.step_failed(
                context.run_id,
                step,
                notebook_uri=None,
                inputs={},
                error=f"{type(failure).__name__}: {failure}",
            )
            _skip_after(context, step)


def _skip_after(context: RunContext, step: str) -> None:
    """Mark the steps after a failed one skipped: the orchestrator will not start them.

    Each names every failed step it depends on as the records say now: on a
    cluster, independent branches go on and may fail too.
    """
    record = context.metadata.run(context.run_id)
    failed = {s.name for s in record.steps if s.status == StepStatus.FAILED} | {step}
    later = downstream(context.bundle.steps, step)
    context.metadata.steps_skipped(context.run_id, skip_reasons(context, failed, later))


def skip_reasons(
    context: RunContext, failed: Collection[str], steps: Iterable[str]
) -> dict[str, str]:
    """Why each of ``steps`` will not run, where the run's plan or a failed step is why.

    A step the run does not need is skipped for that, whatever failed. Another
    names every failed step it depends on: each is a nearest one, as a step
    after a failed one never runs. A step that depends on no failed step is
    left out: what stopped it is for the orchestrator to say.
    """
    graph = context.bundle.steps
    after = {name: downstream(graph, name) for name in graph if name in failed}
    reasons: dict[str, str] = {}
    for name in steps:
        causes = [cause for cause, later in after.items() if name in later]
        if context.modes.get(name) == Mode.SKIP:
            reasons[name] = NOT_NEEDED
        elif causes:
            reasons[name] = failed_steps(causes)
    return reasons


def failed_steps(names: Sequence[str]) -> str:
    """``step 'a' failed`` or ``steps 'a' and 'b' failed``: how skip reasons name their causes."""
    quoted = [repr(name) for name in names]
    if len(quoted) == 1:
        return f"step {quoted[0]} failed"
    return f"steps {', '.join(quoted[:-1])} and {quoted[-1]} failed"


def forget_secrets(stores: Mapping[str, Any]) -> None:
    """Drop the secret variables the description names from this process's environment.

    Kernels inherit the environment, and a step's code prints what it likes.
    """
    for variable in referenced_variables(stores):
        os.environ.pop(variable, None)


def typed_parameters(defaults: Mapping[str, Any], given: Mapping[str, Any]) -> dict[str, Any]:
    """Parameter values from a pipeline's inputs, which may arrive as text, as their defaults' types.

    A parameter whose default is text stays text; others read as JSON or a
    Python literal (``0.2``, ``true``, ``[1, 2]``, ``None``), else as text.
    """
    typed = {}
    for name, value in given.items():
        if not isinstance(value, str) or isinstance(defaults.get(name), str):
            typed[name] = value
            continue
        try:
            typed[name] = json.loads(value, parse_constant=_no_constant)
        except ValueError:
            try:
                typed[name] = ast.literal_eval(value)
            except (ValueError, SyntaxError, MemoryError, RecursionError):
                typed[name] = value
        if not is_finite(typed[name]):  # `1e999` reads as infinity, which JSON cannot keep
            typed[name] = value
        default = defaults.get(name)
        if isinstance(default, float) and isinstance(typed[name], int):
            typed[name] = float(typed[name])
        elif (
            isinstance(default, int)
            and not isinstance(default, bool)
            and isinstance(typed[name], float)
            and typed[name].is_integer()
        ):
            typed[name] = int(typed[name])  # kfp.local passes integers as "5.0"
    return typed


def _no_constant(constant: str) -> Any:
    """``NaN`` and ``Infinity`` are no JSON: such a parameter stays text."""
    raise ValueError(constant)


def _snapshot(stores: Mapping[str, Any]) -> dict[str, Any]:
    """What the run record keeps of the stack: its stores (their secrets are env references)."""
    return {kind: entry for kind, entry in stores.items() if isinstance(entry, Mapping)}


def _write_html(
    path: str | None, store: ArtifactStore, notebook_uri: str | None, step: str
) -> None:
    """The executed notebook as HTML, for the orchestrator's UI (Kubeflow shows HTML artifacts).

    A convenience: the step and its notebook are recorded already, so a page
    that cannot be made is a warning, not a failed step.
    """
    if not path:
        return
    import html

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    try:
        if notebook_uri is None:
            body = f"<p>step {html.escape(step)} did not run: {NOT_NEEDED}</p>"
        else:
            import nbformat
            from nbconvert import HTMLExporter

            notebook = nbformat.reads(store.read_bytes(notebook_uri).decode("utf-8"), as_version=4)
            body, _ = HTMLExporter().from_notebook_node(notebook)
    except Exception as error:  # noqa: BLE001 - see the docstring
        print(
            f"warning: no HTML page of step {step}: {type(error).__name__}: {error}",
            file=sys.stderr,
        )
        body = f"<p>no page for step {html.escape(step)}; its notebook: {html.escape(str(notebook_uri))}</p>"
    Path(path).write_text(body, encoding="utf-8")
