"""Running a notebook as a pipeline on a stack, and the runs it leaves behind.

``run`` reads the saved notebook, exports it as a bundle, keeps the bundle in
the stack's artifact store (once per content), records the run in the
metadata store and hands it to the stack's orchestrator. The same function
serves ``stackmagic pipeline run``, ``%pipeline run`` and Python code.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from .errors import RunFailed, StackmagicError
from .notebook.exporter import Bundle, export_bundle
from .notebook.spec import load_pipeline
from .open_stack import OpenStack
from .operators.driving import prepared_operator
from .orchestrators.base import RunCancelled
from .output import Fields, Output
from .parameters import check_parameters
from .progress import Progress
from .registry import Registry
from .runtime import (
    INTERRUPTED,
    Mode,
    RunContext,
    StepOutcome,
    new_run_id,
    overrides_that_change,
    plan,
)
from .runtime.files import FILE_PREFIX
from .runtime.task import NOT_NEEDED
from .scratch import ScratchFolder
from .stores.artifacts import ArtifactInfo, ArtifactStore
from .stores.metadata import RunRecord
from .stores.models import RunStatus, StepStatus

BUNDLES = "_bundles"


class PipelineFailed(RunFailed):
    """A run ended with a failed step; ``run`` has every step's record."""

    def __init__(self, message: str, run: PipelineRun) -> None:
        from .run_view import run_fields

        super().__init__(message, run_fields(run.record, error_below=True))
        self.run = run


class PipelineRun:
    """A run, as recorded: status, step runs, their outputs (loaded on demand)."""

    def __init__(self, record: RunRecord, artifact_store: ArtifactStore) -> None:
        self.record = record
        self._store = artifact_store

    @property
    def id(self) -> str:
        return self.record.id

    @property
    def status(self) -> str:
        return self.record.status

    @property
    def steps(self) -> dict[str, Any]:
        return {step.name: step for step in self.record.steps}

    def outputs(self, step: str) -> dict[str, Any]:
        """The values a step left, loaded from the artifact store (its files: :meth:`files`)."""
        return self.load(
            {
                name: info
                for name, info in self.record.step(step).outputs.items()
                if not name.startswith(FILE_PREFIX)
            }
        )

    def load(self, artifacts: Mapping[str, ArtifactInfo]) -> dict[str, Any]:
        """These artifacts' values; if ``stackmagic gc`` deleted some, it says so."""
        collected = self.record.collected_at
        if collected is not None and not all(self._store.exists(a.uri) for a in artifacts.values()):
            raise StackmagicError(
                f"the artifacts of run {self.id} were deleted by `stackmagic gc` on "
                f"{collected.astimezone():%Y-%m-%d %H:%M} (its record stays); run the pipeline "
                "again to make them anew"
            )
        return {name: self._store.load(artifact.uri) for name, artifact in artifacts.items()}

    def files(self, step: str) -> dict[str, str]:
        """The files a step wrote beside the notebook: relative path -> URI in the artifact store."""
        return {
            name[len(FILE_PREFIX) :]: info.uri
            for name, info in self.record.step(step).outputs.items()
            if name.startswith(FILE_PREFIX)
        }

    def __repr__(self) -> str:
        return f"<PipelineRun {self.id} of {self.record.pipeline}: {self.status}>"


def run(
    notebook: str | Path,
    *,
    parameters: Mapping[str, Any] | None = None,
    stack: str | None = None,
    no_cache: bool = False,
    only: str | None = None,
    from_step: str | None = None,
    wait: bool = False,
    progress: Progress | None = None,
) -> PipelineRun:
    """Run a saved notebook as a pipeline on a stack (default: the active one).

    Steps run in the notebook's folder (on this machine). On a remote
    orchestrator the run is submitted and, with ``wait``, followed to its end.
    Returns the run; raises :class:`PipelineFailed` (with ``.run``) if a step failed.
    """
    with _exported(notebook, parameters, stack, recording=True) as (
        notebook,
        opened,
        bundle,
        overrides,
    ):
        return run_bundle(
            bundle,
            opened,
            workdir=notebook.parent,
            notebook=str(notebook),
            overrides=overrides,
            no_cache=no_cache,
            only=only,
            from_step=from_step,
            wait=wait,
            progress=progress,
        )


def preview(
    notebook: str | Path,
    *,
    parameters: Mapping[str, Any] | None = None,
    stack: str | None = None,
    only: str | None = None,
    from_step: str | None = None,
) -> Output:
    """What a run would start on the stack's orchestrator; nothing is stored, recorded or started.

    The launch is made from the stack's options alone: the metadata store is never opened, so
    a dry run needs neither the database nor its driver. The parameters, ``only`` and
    ``from_step`` are checked as ``run`` checks them; they reach a VM through the run's record,
    which a dry run does not write.
    """
    with _exported(notebook, parameters, stack, recording=False) as (_, opened, bundle, _):
        config = opened.orchestrator_config
        orchestrator = config.orchestrator(opened)
        orchestrator.check(bundle)
        plan(bundle, only=only, from_step=from_step)
        run_id = new_run_id()
        step_operator = prepared_operator(bundle, opened, run_id)
        jobs = step_operator.preview(bundle, run_id) if step_operator is not None else None
        if hasattr(orchestrator, "preview"):
            launch: Fields = orchestrator.preview(run_id, bundle.pipeline)
            if jobs is None:
                return launch
            return dataclasses.replace(
                launch,
                parts=[*launch.parts, jobs],
                data={**launch.data, "step_operator": jobs.data},
            )
        if jobs is None:
            raise StackmagicError(
                f"--dry-run shows what a cloud-VM orchestrator or a step operator would start; "
                f"the {config.flavor} orchestrator starts nothing to show, and no step names a "
                "step operator (`stackmagic pipeline show NOTEBOOK` shows the steps)"
            )
        return dataclasses.replace(
            jobs, title=f"Dry run: {jobs.title} (nothing was started or recorded)"
        )


def cache_forecast(
    notebook: str | Path,
    *,
    parameters: Mapping[str, Any] | None = None,
    stack: str | None = None,
) -> Output:
    """Which steps a run would take from the stack's cache now, and why the others would run.

    Nothing runs and no run is recorded: the bundle is made in a temporary folder for its keys.
    """
    from .run_view import forecast_table
    from .runtime.cache import forecast

    with _exported(notebook, parameters, stack, recording=True) as (
        notebook,
        opened,
        bundle,
        overrides,
    ):
        forecasts = forecast(
            bundle, opened.metadata, opened.artifact_store, {**bundle.parameters, **overrides}
        )
        return forecast_table(f"{bundle.pipeline} ({notebook.name})", opened.name, forecasts)


@contextlib.contextmanager
def _exported(
    notebook: str | Path,
    parameters: Mapping[str, Any] | None,
    stack: str | None,
    *,
    recording: bool,
) -> Iterator[tuple[Path, OpenStack, Bundle, dict[str, Any]]]:
    """The saved notebook's bundle, on the opened stack, with the parameters it overrides.

    ``recording``: the metadata store is connected first, so a database out of reach
    fails the command before the bundle is made or stored; files earlier runs wrote
    beside the notebook, as they left them, stay out of the bundle (they are outputs).
    """
    notebook = Path(notebook).expanduser().resolve()
    spec = load_pipeline(notebook)
    overrides = check_parameters(spec.parameter_names, parameters or {}, spec.parameters)
    with OpenStack.open(Registry.open(), stack) as opened, ScratchFolder("bundle") as scratch:
        written = {}
        if recording:
            opened.connect_metadata()
            written = opened.metadata.output_hashes(spec.name, FILE_PREFIX)
        yield (
            notebook,
            opened,
            export_bundle(
                spec, Path(scratch) / "bundle", exclude=opened.local_paths(), written=written
            ),
            overrides,
        )


def run_logs(store: ArtifactStore, record: RunRecord) -> dict[str, str]:
    """The logs a run left in the artifact store: each VM try's or orchestrator pod's, or
    kfp.local's."""
    from .orchestrators.vm import vm_log_uri
    from .runtime.cluster import pod_log_uri

    logs = {}
    for log_uri in (vm_log_uri, pod_log_uri):
        attempt = 1
        while store.exists(uri := log_uri(store, record.pipeline, record.id, attempt)):
            logs[uri] = store.read_bytes(uri).decode(errors="replace")
            attempt += 1
    kfp_local = store.uri(record.pipeline, record.id, "kfp-local.log")
    if store.exists(kfp_local):
        logs[kfp_local] = store.read_bytes(kfp_local).decode(errors="replace")
    return logs


def run_bundle(
    bundle: Bundle,
    opened: OpenStack,
    *,
    workdir: Path,
    notebook: str,
    overrides: Mapping[str, Any],
    no_cache: bool = False,
    only: str | None = None,
    from_step: str | None = None,
    wait: bool = False,
    progress: Progress | None = None,
) -> PipelineRun:
    """Record a run of ``bundle`` and hand it to the stack's orchestrator; steps run in ``workdir``.

    A remote orchestrator's run goes on without this process: with ``wait``
    it is followed to its end, else the run is returned as submitted.
    """
    progress = progress or Progress()
    orchestrator = opened.orchestrator_config.orchestrator(opened)
    orchestrator.check(bundle)
    run_id = new_run_id()
    step_operator = prepared_operator(bundle, opened, run_id)
    context = RunContext(
        run_id=run_id,
        bundle=bundle,
        artifact_store=opened.artifact_store,
        metadata=opened.metadata,
        workdir=workdir,
        overrides=dict(overrides),
        no_cache=no_cache,
        modes=plan(bundle, only=only, from_step=from_step),
        only=only,
        from_step=from_step,
        bundle_uri=store_bundle(opened.artifact_store, bundle),
        wait=wait,
        step_operator=step_operator,
    )
    opened.metadata.create_run(
        run_id=context.run_id,
        pipeline=bundle.pipeline,
        notebook=notebook,
        stack_name=opened.name,
        stack=opened.snapshot(),
        bundle_uri=context.bundle_uri,
        bundle_hash=bundle.hash,
        options={"no_cache": no_cache, "only": only, "from": from_step},
        parameters=context.parameters,
        overridden=overrides_that_change(overrides, bundle.parameters),
        steps=list(bundle.steps),
        driven_here=not orchestrator.detached,
    )
    for warning in bundle.manifest["warnings"]:
        progress.warn(warning)
    if not orchestrator.detached:  # a remote run's tasks record this themselves
        opened.metadata.steps_skipped(
            context.run_id,
            {name: NOT_NEEDED for name, mode in context.modes.items() if mode == Mode.SKIP},
        )
    progress.run_started(
        context.run_id,
        bundle.pipeline,
        [name for name, mode in context.modes.items() if mode != Mode.SKIP],
    )
    error = None
    try:
        with (
            contextlib.nullcontext()
            if orchestrator.detached
            else opened.metadata.keeping_alive(context.run_id)
        ):
            try:
                outcomes = orchestrator.run(context, progress)
            except RunCancelled:  # the orchestrator stopped the steps and recorded it
                outcomes = []
            for warning in (w for outcome in outcomes for w in outcome.warnings):
                progress.warn(warning)
            error = first_failure(outcomes)
    except KeyboardInterrupt:
        if not submitted(orchestrator):  # a submitted run goes on: only following it stops
            error = INTERRUPTED
        raise
    except Exception as failure:  # the orchestrator could not take the run, or lost sight of it
        if not submitted(orchestrator):
            error = (
                str(failure)
                if isinstance(failure, StackmagicError)
                else (f"{type(failure).__name__}: {failure}")
            )
        raise
    finally:
        if not orchestrator.detached or error is not None:
            opened.metadata.run_finished(context.run_id, error=error)
        progress.run_finished()
    result = PipelineRun(opened.metadata.run(context.run_id), opened.artifact_store)
    if result.status in (RunStatus.FAILED, RunStatus.PREEMPTED):
        raise PipelineFailed(
            f"run {result.id} of {bundle.pipeline} failed: {result.record.error}", result
        )
    if result.status == RunStatus.CANCELLED:
        raise PipelineFailed(f"run {result.id} of {bundle.pipeline} was cancelled", result)
    return result


def submitted(orchestrator: Any) -> bool:
    """Whether a detached orchestrator has handed the run over: its record is then the cluster's."""
    return bool(orchestrator.detached and orchestrator.submitted)


def store_bundle(store: ArtifactStore, bundle: Bundle) -> str:
    """Keep the bundle in the artifact store under its hash, unless it is there already."""
    uri = store.uri(BUNDLES, f"{bundle.hash}.zip")
    if not store.exists(uri):
        store.put_bytes(bundle.archive(), uri)
    return uri


def fetch_bundle(store: ArtifactStore, location: str, directory: Path) -> Bundle:
    """A bundle from the artifact store (``.../_bundles/HASH.zip``), a local zip or a local folder."""
    local = Path(location).expanduser()
    if local.is_dir():
        return Bundle.load(local.resolve())
    if local.is_file():
        return Bundle.unpack(local.read_bytes(), directory)
    try:
        archive = store.read_bytes(location)
    except ValueError:
        raise StackmagicError(
            f"no bundle at {location}: give a folder or zip from `stackmagic pipeline export`, "
            f"or a bundle in the artifact store ({store.root}/{BUNDLES}/...)"
        ) from None
    return Bundle.unpack(archive, directory)


def first_failure(outcomes: list[StepOutcome]) -> str | None:
    for outcome in outcomes:
        if outcome.status == StepStatus.FAILED:
            where = f"; executed notebook: {outcome.notebook_uri}" if outcome.notebook_uri else ""
            return f"step {outcome.step!r} failed: {outcome.error}{where}"
    return None
