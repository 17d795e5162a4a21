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
import json
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..errors import RunFailed
from ..stores.models import StepStatus
from ..stores.portable import open_stores
from . import Mode, RunContext, downstream, plan, run_step


def run_task(
    *,
    step: str,
    run_id: str,
    bundle_uri: str,
    stores: Mapping[str, Any],
    parameters: Mapping[str, str],
    options: Mapping[str, Any],
    html_path: str | None = None,
) -> None:
    """Run ``step`` of run ``run_id``; raise :class:`RunFailed` if it failed, so the task fails."""
    from ..orchestrators.kernels import KernelPool
    from ..pipelines import fetch_bundle

    artifact_store, metadata = open_stores(stores)
    try:
        with tempfile.TemporaryDirectory(prefix="stackmagic-bundle-") as scratch:
            bundle = fetch_bundle(artifact_store, bundle_uri, Path(scratch))
            values = typed_parameters(bundle.parameters, parameters)
            overrides = {
                name: value for name, value in values.items()
                if name not in bundle.parameters or bundle.parameters[name] != value
            }
            only, from_step = options.get("only") or None, options.get("from") or None
            no_cache = str(options.get("no_cache")).lower() in ("true", "1")  # KFP gives text
            metadata.create_run(
                run_id=run_id, pipeline=bundle.pipeline, notebook=bundle.manifest["notebook"],
                stack_name=str(stores.get("stack", "")), stack=_snapshot(stores),
                bundle_uri=bundle_uri, bundle_hash=bundle.hash,
                options={"no_cache": no_cache, "only": only, "from": from_step},
                parameters={**bundle.parameters, **overrides}, overridden=list(overrides),
                steps=list(bundle.steps), driven_here=False, exist_ok=True,
            )
            context = RunContext(
                run_id=run_id, bundle=bundle, artifact_store=artifact_store, metadata=metadata,
                workdir=bundle.sources, overrides=overrides, no_cache=no_cache,
                modes=plan(bundle, only=only, from_step=from_step), only=only, from_step=from_step,
                bundle_uri=bundle_uri,
            )
            previous = metadata.run(run_id).step(step)
            if context.modes[step] == Mode.SKIP:
                metadata.steps_skipped(run_id, [step], "not needed by this run")
                metadata.settle_run(run_id)
                _write_html(html_path, artifact_store, None, f"step {step} is not needed by this run")
                return
            if previous.status in StepStatus.WITH_OUTPUTS:  # a retried pod after the step ended
                _write_html(html_path, artifact_store, previous.notebook_uri, "")
                return
            pool = KernelPool(bundle.manifest["kernel"], bundle.sources,
                              artifact_store.secret_environment())
            try:
                attempt = previous.attempts + 1
                outcome = run_step(context, step, kernel_pool=pool, attempt=attempt)
            finally:
                pool.close()
            _write_html(html_path, artifact_store, outcome.notebook_uri, outcome.error or "")
            if outcome.status == StepStatus.FAILED:
                if attempt <= int(bundle.steps[step].settings.get("retries", 0)):
                    raise RunFailed(f"step {step!r} failed (try {attempt}, to be retried): "
                                    f"{outcome.error}")
                later = sorted(downstream(bundle.steps, step), key=list(bundle.steps).index)
                metadata.steps_skipped(run_id, later, f"step {step!r} failed")
                metadata.settle_run(run_id)
                raise RunFailed(f"step {step!r} of run {run_id} failed: {outcome.error}")
            metadata.settle_run(run_id)
    finally:
        metadata.close()


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
            typed[name] = json.loads(value)
        except ValueError:
            try:
                typed[name] = ast.literal_eval(value)
            except (ValueError, SyntaxError, MemoryError, RecursionError):
                typed[name] = value
        if isinstance(defaults.get(name), float) and isinstance(typed[name], int):
            typed[name] = float(typed[name])
    return typed


def _snapshot(stores: Mapping[str, Any]) -> dict[str, Any]:
    """What the run record keeps of the stack: its stores (their secrets are env references)."""
    return {kind: entry for kind, entry in stores.items() if isinstance(entry, Mapping)}


def _write_html(path: str | None, store: Any, notebook_uri: str | None, note: str) -> None:
    """The executed notebook as HTML, for the orchestrator's UI (Kubeflow shows HTML artifacts)."""
    if not path:
        return
    import html

    import nbformat
    from nbconvert import HTMLExporter

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    if notebook_uri is None:
        Path(path).write_text(f"<p>{html.escape(note)}</p>", encoding="utf-8")
        return
    notebook = nbformat.reads(store.read_bytes(notebook_uri).decode("utf-8"), as_version=4)
    body, _ = HTMLExporter().from_notebook_node(notebook)
    Path(path).write_text(body, encoding="utf-8")
