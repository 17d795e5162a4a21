"""Pipelines: show, run, export and cancel them; read a run's logs and load its outputs."""

from __future__ import annotations

import argparse
import os
import reprlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import StackmagicError, UsageError
from ..flavors import ComponentType
from ..output import Fields, Message, Output
from ..registry import Registry

if TYPE_CHECKING:
    from ..notebook.spec import PipelineSpec

#: Set by Jupyter Server for every kernel it starts: the path of the kernel's notebook.
SESSION_ENV = "JPY_SESSION_NAME"


def pipeline_show(args: argparse.Namespace) -> Output:
    from ..notebook.spec import load_pipeline
    from ..notebook.view import pipeline_table
    from ..pipelines import cache_forecast

    notebook = notebook_path(args.notebook, args.command_words)
    if args.cache:
        return cache_forecast(notebook, parameters=_parameters(args), stack=args.stack)
    if args.parameter or args.stack:
        raise UsageError("-p and --stack go with --cache", args.command_words)
    return pipeline_table(load_pipeline(notebook))


def pipeline_run(args: argparse.Namespace) -> Output:
    from ..pipelines import preview, run
    from ..progress import choose
    from ..run_view import run_fields

    notebook = notebook_path(args.notebook, args.command_words)
    parameters = _parameters(args)
    if args.dry_run:
        if args.wait:
            raise UsageError(
                "--dry-run starts nothing for --wait to follow; give one of the two",
                args.command_words,
            )
        return preview(
            notebook,
            parameters=parameters,
            stack=args.stack,
            only=args.only,
            from_step=args.from_step,
        )
    finished = run(
        notebook,
        parameters=parameters,
        stack=args.stack,
        no_cache=args.no_cache,
        only=args.only,
        from_step=args.from_step,
        wait=args.wait,
        progress=choose("none" if args.as_json else args.progress),
    )
    return run_fields(finished.record)


def pipeline_export(args: argparse.Namespace) -> Output:
    from ..notebook.exporter import export_bundle
    from ..notebook.spec import load_pipeline
    from ..open_stack import local_paths, stack_components

    spec = load_pipeline(notebook_path(args.notebook, args.command_words))
    if args.operator and args.to != "airflow":
        raise UsageError("--operator goes with --to airflow", args.command_words)
    if args.to == "airflow":
        from .airflow_export import export_airflow

        return export_airflow(
            spec,
            Path(args.output).expanduser().resolve(),
            args.stack,
            operator=args.operator,
            replace=args.force,
        )
    if args.to == "kubeflow":
        return _export_kubeflow(
            spec, Path(args.output).expanduser().resolve(), args.stack, replace=args.force
        )
    stores = local_paths(stack_components(Registry.open(), args.stack))
    bundle = export_bundle(spec, Path(args.output).expanduser().resolve(), exclude=stores)
    lines = [
        f"Exported {spec.name} ({len(bundle.steps)} steps) to {bundle.directory}",
        *(f"warning: {warning}" for warning in bundle.manifest["warnings"]),
    ]
    return Message("\n".join(lines), {"directory": str(bundle.directory), **bundle.manifest})


def _export_kubeflow(
    spec: PipelineSpec, output: Path, stack: str | None, *, replace: bool
) -> Output:
    """Compile for the stack's kubeflow orchestrator; the bundle goes to its artifact store.

    The output is checked first, so a path that cannot be written uploads nothing.
    """
    from ..flavors.orchestrators import KubeflowOrchestrator
    from ..notebook.exporter import export_bundle
    from ..open_stack import OpenStack
    from ..pipelines import store_bundle
    from ..scratch import ScratchFolder

    if output.is_dir():
        raise StackmagicError(
            f"{output} is a folder; give the YAML file to write, pipeline.yaml say"
        )
    if output.suffix.lower() not in (".yaml", ".yml"):
        raise StackmagicError(
            f"{output.name}: a Kubeflow pipeline is written as YAML; name the file .yaml (pipeline.yaml)"
        )
    if output.exists() and not replace:
        raise StackmagicError(f"{output} exists; give another file, or --force to replace it")
    with OpenStack.open(Registry.open(), stack) as opened, ScratchFolder("bundle") as scratch:
        orchestrator = opened.components[ComponentType.ORCHESTRATOR]
        config = orchestrator.config
        if not isinstance(config, KubeflowOrchestrator):
            raise StackmagicError(
                f"stack {opened.name!r} runs pipelines with the {orchestrator.flavor} orchestrator "
                f"{orchestrator.name!r}; compiling for Kubeflow needs a stack with a kubeflow one "
                "(--stack NAME, or `stackmagic orchestrator register kf --type=kubeflow --host=URL`)"
            )
        bundle = export_bundle(spec, Path(scratch) / "bundle", exclude=opened.local_paths())
        config.orchestrator(opened).check(bundle)  # refuses a missing kubeflow extra
        from ..orchestrators.kubeflow import compile_pipeline

        bundle_uri = store_bundle(opened.artifact_store, bundle)
        compile_pipeline(bundle, bundle_uri, opened, config, output)
    local = config.mode == "local"
    return Message(
        f"Compiled {spec.name} ({len(bundle.steps)} steps) for Kubeflow Pipelines to {output}; "
        f"its steps fetch the bundle {bundle_uri}"
        + (
            "\nnote: compiled for --mode=local (no image, no Kubernetes secret); for a cluster, "
            f"`stackmagic orchestrator update {orchestrator.name} --mode=remote --image=...`"
            if local
            else ""
        ),
        {"pipeline": str(output), "bundle": bundle_uri, "steps": list(bundle.steps)},
    )


def pipeline_cancel(args: argparse.Namespace) -> Output:
    from ..open_stack import OpenStack
    from ..orchestrators.cancelling import cancel_run
    from ..stores.models import RunStatus, StepStatus

    with OpenStack.open(Registry.open(), args.stack) as opened:
        record = cancel_run(opened, args.run_id, wait=not args.no_wait)
    if record.status == RunStatus.CANCELLED:
        stopped = [step.name for step in record.steps if step.status == StepStatus.CANCELLED]
        said = f"; stopped {', '.join(stopped)}" if stopped else ""
        return Message(
            f"Cancelled run {record.id} of {record.pipeline}{said}",
            {"id": record.id, "status": record.status},
        )
    return Message(
        f"Asked run {record.id} of {record.pipeline} to stop; "
        f"`stackmagic pipeline describe {record.id}` shows when it has",
        {"id": record.id, "status": "cancelling"},
    )


def pipeline_logs(args: argparse.Namespace) -> Output:
    from ..open_stack import OpenStack
    from ..pipelines import run_logs

    with OpenStack.open(Registry.open(), args.stack) as opened:
        record = opened.metadata.run(args.run_id)
        logs = run_logs(opened.artifact_store, record)
    if not logs:
        raise StackmagicError(
            f"run {record.id} left no log: runs on the local orchestrator show their output as "
            f"they go; `stackmagic pipeline describe {record.id}` shows each step and its "
            "executed notebook"
        )
    text = "\n".join(f"== {uri} ==\n{body.rstrip()}" for uri, body in logs.items())
    return Message(
        text, {"run": record.id, "logs": [{"uri": u, "text": b} for u, b in logs.items()]}
    )


def pipeline_load(args: argparse.Namespace) -> Output:
    from ..open_stack import OpenStack
    from ..pipelines import PipelineRun
    from ..runtime.files import FILE_PREFIX

    step, _, wanted = args.what.partition(".")
    with OpenStack.open(Registry.open(), args.stack) as opened:
        record = opened.metadata.run(args.run_id)
    outputs = {
        name: info
        for name, info in record.step(step).outputs.items()
        if not name.startswith(FILE_PREFIX)
    }  # files stay where the step wrote them
    if wanted and wanted not in outputs:
        raise StackmagicError(
            f"step {step!r} of run {record.id} has no output {wanted!r} "
            f"(outputs: {', '.join(outputs) or 'none'})"
        )
    chosen = {wanted: outputs[wanted]} if wanted else outputs
    if not chosen:
        raise StackmagicError(
            f"step {step!r} of run {record.id} left no outputs: it binds no name a later step reads "
            "(a final step keeps what it binds)"
        )
    values = PipelineRun(record, opened.artifact_store).load(chosen)
    fields = [
        (name, f"{reprlib.repr(values[name])}  ({info.type_name}, from {info.uri})")
        for name, info in chosen.items()
    ]
    loaded = Fields(
        f"Loaded from run {record.id}, step {step}",
        fields,
        {name: info.to_json() for name, info in chosen.items()},
    )
    loaded.namespace = values
    return loaded


def _parameters(args: argparse.Namespace) -> dict[str, Any]:
    """The ``-p NAME VALUE`` options, each a Python literal or else text."""
    from ..parameters import parse_parameter

    parameters: dict[str, Any] = {}
    for name, value in args.parameter:
        if name in parameters:
            raise UsageError(f"-p {name} is given twice", args.command_words)
        parameters[name] = parse_parameter(value)
    return parameters


def notebook_path(given: str | None, command: str) -> Path:
    """The notebook a pipeline command is about: the one given, else the kernel's own."""
    path = given or os.environ.get(SESSION_ENV)
    if not path:
        raise UsageError(
            "which notebook? give its path (outside Jupyter there is no current notebook)", command
        )
    return Path(path).expanduser().resolve()
