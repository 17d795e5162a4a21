"""What runs where a step runs: one step of a bundle, from its inputs to its recorded outputs.

Every orchestrator uses :func:`run_step`: the local one calls it in-process
with a pool of started kernels, remote ones run ``python -m stackmagic.runtime``
(see ``__main__.py``).
A step first looks for a cached result (same code, parameters, settings and
input contents); otherwise its notebook runs under papermill, the executed
notebook is kept in the artifact store, and the outputs, metrics and status
go to the metadata store.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import StackmagicError
from ..notebook.exporter import CONTEXT_VARIABLE, Bundle, BundleStep, failed_cell
from ..stores.artifacts import ArtifactInfo, ArtifactStore
from ..stores.metadata import CacheHit, MetadataStore, RunRecord, StoredArtifact
from ..stores.models import StepStatus

if TYPE_CHECKING:
    from ..orchestrators.kernels import KernelPool


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

    @property
    def parameters(self) -> dict[str, Any]:
        return {**self.bundle.parameters, **self.overrides}


@dataclass
class StepOutcome:
    step: str
    status: str
    seconds: float
    error: str | None = None
    notebook_uri: str | None = None


def recorded_context(
    record: RunRecord, bundle: Bundle, artifact_store: ArtifactStore, metadata: MetadataStore,
    bundle_uri: str = "",
) -> RunContext:
    """The context of a run as its record says, for a process that carries on a recorded run."""
    options = record.options
    return RunContext(
        run_id=record.id, bundle=bundle, artifact_store=artifact_store, metadata=metadata,
        workdir=bundle.sources,
        overrides={name: record.parameters[name] for name in record.overridden},
        no_cache=bool(options.get("no_cache")),
        modes=plan(bundle, only=options.get("only"), from_step=options.get("from")),
        only=options.get("only"), from_step=options.get("from"),
        bundle_uri=bundle_uri or record.bundle_uri,
    )


def new_run_id() -> str:
    """Sortable and unique: ``20261127-081523-3fa9c1``."""
    return f"{datetime.now(timezone.utc):%Y%m%d-%H%M%S}-{secrets.token_hex(3)}"


def plan(bundle: Bundle, *, only: str | None = None, from_step: str | None = None) -> dict[str, str]:
    """Each step's :class:`Mode` for a whole run, ``--only STEP`` or ``--from STEP``."""
    steps = bundle.steps
    for flag, name in (("--only", only), ("--from", from_step)):
        if name is not None and name not in steps:
            raise StackmagicError(
                f"{flag} {name}: the pipeline has no such step (steps: {', '.join(steps)})"
            )
    if only is None and from_step is None:
        return dict.fromkeys(steps, Mode.RUN)
    if only is not None and from_step is not None:
        raise StackmagicError("give --only or --from, not both")
    forced = {only} if only is not None else {from_step, *downstream(steps, str(from_step))}
    needed = set().union(*(_upstream(steps, name) for name in forced)) - forced
    return {
        name: Mode.FORCE if name in forced else Mode.CACHED if name in needed else Mode.SKIP
        for name in steps
    }


def _upstream(steps: Mapping[str, BundleStep], name: str) -> set[str]:
    """Every step ``name`` depends on, directly or through others."""
    return _reachable(name, lambda step: steps[step].upstream)


def downstream(steps: Mapping[str, BundleStep], name: str) -> set[str]:
    """Every step that depends on ``name``, directly or through others."""
    children: dict[str, list[str]] = {step: [] for step in steps}
    for step, spec in steps.items():
        for parent in spec.upstream:
            children[parent].append(step)
    return _reachable(name, children.__getitem__)


def _reachable(start: str, neighbours: Callable[[str], list[str]]) -> set[str]:
    found: set[str] = set()
    frontier = [start]
    while frontier:
        for step in neighbours(frontier.pop()):
            if step not in found:
                found.add(step)
                frontier.append(step)
    return found


def code_key(bundle: Bundle, step: str, parameters: Mapping[str, Any]) -> str:
    """Everything but the inputs that decides what a step computes."""
    spec = bundle.steps[step]
    used = sorted({*spec.parameters, *bundle.manifest["setup_parameters"]})
    return _hash({
        "code": spec.source_hash,
        "saves": [spec.outputs, spec.results],
        "sources": bundle.manifest["sources"]["digest"],
        "kernel": bundle.manifest["kernel"],
        # a default the cell's text does not tell (`a, b = 1, 2`): the cell's text stands in
        "parameters": {name: parameters.get(name, bundle.manifest["parameters_hash"]) for name in used},
        "settings": spec.cache_settings(),
    })


def cache_key(code: str, inputs: Mapping[str, StoredArtifact]) -> str:
    return _hash({"code": code, "inputs": {name: a.info.content_hash for name, a in inputs.items()}})


def _hash(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=repr).encode()).hexdigest()


def step_inputs(context: RunContext, step: str) -> dict[str, StoredArtifact]:
    """The artifacts a step reads, as its upstream steps left them in this run."""
    by_producer: dict[str, dict[str, StoredArtifact]] = {}
    inputs = {}
    for name, producer in context.bundle.steps[step].inputs.items():
        if producer not in by_producer:
            by_producer[producer] = context.metadata.step_outputs(context.run_id, producer)
        if name not in by_producer[producer]:
            raise StackmagicError(f"step {producer!r} left no output {name!r} for step {step!r}")
        inputs[name] = by_producer[producer][name]
    return inputs


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
    on_start: Callable[[str], None] | None = None,
    attempt: int | None = None,
    will_retry: bool = False,
) -> StepOutcome:
    """Run (or reuse) one step of the run and record what happened.

    The step is tried ``--retries`` more times if it fails, unless ``attempt``
    is given: then the orchestrator retries (a new pod), and this is that try;
    if it fails and ``will_retry``, the step is recorded as waiting for the
    next try, not failed, so the run is not finished meanwhile.
    """
    started = time.perf_counter()
    spec = context.bundle.steps[step]
    inputs = step_inputs(context, step)
    code = code_key(context.bundle, step, context.parameters)
    key = cache_key(code, inputs)
    if context.resumed:
        kept = context.metadata.run(context.run_id).step(step)
        if kept.status in StepStatus.WITH_OUTPUTS and kept.cache_key == key:
            return StepOutcome(step, kept.status, kept.seconds or 0.0, notebook_uri=kept.notebook_uri)
    if may_use_cache(context, step):
        hit = _find_hit(context, key)
        if hit is not None:
            context.metadata.step_cached(
                context.run_id, step, code_key=code, cache_key=key, hit=hit, inputs=inputs
            )
            return StepOutcome(step, StepStatus.CACHED, time.perf_counter() - started)
        if context.modes.get(step) == Mode.CACHED:
            error = (
                f"step {step!r} has no cached result for this code, these parameters and inputs, "
                "so the steps after it cannot start from it; run the pipeline without --only/--from"
            )
            context.metadata.step_failed(context.run_id, step, error=error, notebook_uri=None,
                                         inputs=inputs)
            return StepOutcome(step, StepStatus.FAILED, time.perf_counter() - started, error)
    if on_start is not None:
        on_start(step)
    attempts = [attempt] if attempt else range(1, int(spec.settings.get("retries", 0)) + 2)
    for number in attempts:
        context.metadata.step_started(context.run_id, step, code_key=code, attempt=number)
        notebook_uri, result, error = _execute(context, step, inputs, kernel_pool)
        if error is None:
            context.metadata.step_completed(
                context.run_id, step, code_key=code, cache_key=key, inputs=inputs,
                outputs={n: ArtifactInfo.from_json(i) for n, i in result["outputs"].items()},
                metrics=[(str(n), float(v)) for n, v in result["metrics"]],
                notebook_uri=notebook_uri,
            )
            return StepOutcome(step, StepStatus.COMPLETED, time.perf_counter() - started,
                               notebook_uri=notebook_uri)
    if will_retry:
        context.metadata.step_retrying(context.run_id, step, error=f"try {attempt} failed: {error}",
                                       notebook_uri=notebook_uri)
    else:
        context.metadata.step_failed(context.run_id, step, error=str(error),
                                     notebook_uri=notebook_uri, inputs=inputs)
    return StepOutcome(step, StepStatus.FAILED, time.perf_counter() - started, error, notebook_uri)


def _find_hit(context: RunContext, key: str) -> CacheHit | None:
    """The newest earlier result with this key whose outputs are all still in the store."""
    for hit in context.metadata.cache_hits(key, other_than=context.run_id):
        if all(context.artifact_store.exists(a.info.uri) for a in hit.outputs.values()):
            return hit
    return None


def _execute(
    context: RunContext, step: str, inputs: Mapping[str, StoredArtifact], kernel_pool: KernelPool
) -> tuple[str | None, dict[str, Any], str | None]:
    """Run the step's notebook; returns the executed notebook's URI, the result, and an error."""
    import papermill
    from papermill.exceptions import PapermillExecutionError

    from ..step_io import RESULT_MIME_TYPE

    store = context.artifact_store
    bundle = context.bundle
    step_context = {
        "run": context.run_id,
        "step": step,
        "store": store.describe(),
        "inputs": {name: artifact.info.uri for name, artifact in inputs.items()},
        "outputs": store.uri(bundle.pipeline, context.run_id, step),
        "readers": {
            name: [other for other, spec in bundle.steps.items() if spec.inputs.get(name) == step]
            for name in bundle.steps[step].outputs
        },
    }
    error: str | None = None
    with tempfile.TemporaryDirectory(prefix="stackmagic-step-") as scratch:
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
                progress_bar=False,
                request_save_on_cell_execute=False,
            )
        except PapermillExecutionError as failure:
            import nbformat

            where = failed_cell(nbformat.read(executed_path, as_version=4))
            error = f"{failure.ename}: {failure.evalue} (in {where})"
            executed = None
        except Exception as failure:  # the kernel died, timed out, never started, or was stopped
            if kernel_pool.stopped:
                error = "interrupted"
            elif isinstance(failure, StackmagicError):
                error = str(failure)
            else:
                error = f"{type(failure).__name__}: {failure}"
            executed = None
        notebook_uri = None
        if executed_path.exists():
            notebook_uri = store.uri(bundle.pipeline, context.run_id, step, f"{step}.ipynb")
            store.put_file(executed_path, notebook_uri)
    if error is not None:
        return notebook_uri, {}, error
    for output in executed.cells[-1].get("outputs", []):
        result = output.get("data", {}).get(RESULT_MIME_TYPE)
        if result is not None:
            return notebook_uri, result, None
    return notebook_uri, {}, "the step's outputs cell reported nothing (was the notebook changed?)"
