"""What each command does: called alike by the terminal, the magics and the widgets.

Handlers take the parsed arguments and return an :class:`~stackmagic.output.Output`;
they raise :class:`~stackmagic.errors.StackmagicError` for anything the user
can fix, after which nothing has changed on disk.
"""

from __future__ import annotations

import argparse
import getpass
import os
import reprlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import StackmagicError, UsageError
from .flavors import (
    ComponentType,
    FlavorConfig,
    flavors_of,
    format_value,
    get_flavor,
    option_flag,
)
from .output import Fields, Message, Output, Table
from .registry import PROJECT_START, STACK_ENV, Component, Registry, Stack

if TYPE_CHECKING:
    from .notebook.spec import PipelineSpec

PROMPT = "-"


def init(args: argparse.Namespace) -> Output:
    registry, created = Registry.init(Path.cwd())
    verb = "Initialized" if created else "Already initialized:"
    return Message(
        f"{verb} stackmagic in {registry.directory}",
        {"directory": str(registry.directory), "created": created},
    )


# -- components ------------------------------------------------------------------


def component_register(args: argparse.Namespace) -> Output:
    kind: ComponentType = args.kind
    flavor = get_flavor(kind, args.flavor)
    options = _ask_for_secrets(flavor, args.name, args.options)
    component = Registry.open().register_component(kind, args.name, args.flavor, options, _here())
    return Message(
        f"Registered {kind.noun} {component.name!r} ({component.flavor}).", _component_data(component)
    )


def component_update(args: argparse.Namespace) -> Output:
    registry = Registry.open()
    kind: ComponentType = args.kind
    flavor = type(registry.component(kind, args.name).config)
    options = _ask_for_secrets(flavor, args.name, args.options)
    component = registry.update_component(kind, args.name, options, _here())
    return Message(f"Updated {kind.noun} {component.name!r}.", _component_data(component))


def component_delete(args: argparse.Namespace) -> Output:
    Registry.open().delete_component(args.kind, args.name)
    return Message(f"Deleted {args.kind.noun} {args.name!r}.", {"deleted": args.name})


def component_list(args: argparse.Namespace) -> Output:
    kind: ComponentType = args.kind
    registry = Registry.open()
    in_active = registry.stack(registry.active_stack_name()).components.get(kind)
    components = registry.components(kind)
    users = _stacks_using(registry, kind)
    return Table(
        title=kind.noun.capitalize() + "s",
        columns=["name", "flavor", "used by", "settings"],
        rows=[
            [c.name, c.flavor, ", ".join(users.get(c.name, [])) or "-", _settings_line(c)]
            for c in components
        ],
        highlight=frozenset(i for i, c in enumerate(components) if c.name == in_active),
        data=[{**_component_data(c), "used_by": users.get(c.name, [])} for c in components],
    )


def component_describe(args: argparse.Namespace) -> Output:
    registry = Registry.open()
    component = registry.component(args.kind, args.name)
    used_by = _stacks_using(registry, args.kind).get(component.name, [])
    return _component_fields(component, used_by)


def component_flavors(args: argparse.Namespace) -> Output:
    kind: ComponentType = args.kind
    flavors = flavors_of(kind)
    parts = [
        Fields(
            f"{name} ({flavor.summary().rstrip('.')})",
            [(_option_synopsis(option), option["help"]) for option in flavor.schema()["options"]]
            or [("(no options)", "")],
            stacked=True,
        )
        for name, flavor in flavors.items()
    ]
    return Fields(
        f"{kind.noun.capitalize()} flavors (register with --type=FLAVOR)",
        [],
        [flavor.schema() for flavor in flavors.values()],
        parts,
    )


# -- stacks ------------------------------------------------------------------------


def stack_register(args: argparse.Namespace) -> Output:
    stack = Registry.open().register_stack(args.name, _members(args))
    return Message(
        f"Registered stack {stack.name!r}; activate it with `stackmagic stack set {stack.name}`.",
        _stack_data(stack, active=False),
    )


def stack_update(args: argparse.Namespace) -> Output:
    changes: dict[ComponentType, str | None] = dict(_members(args))
    if args.no_step_operator and args.step_operator:
        raise UsageError("-s and --no-step-operator contradict each other: give one", "stack update")
    if args.no_step_operator:
        changes[ComponentType.STEP_OPERATOR] = None
    registry = Registry.open()
    active = registry.active_stack_name()  # a bad STACKMAGIC_STACK fails before anything is written
    stack = registry.update_stack(args.name, changes)
    return Message(f"Updated stack {stack.name!r}.", _stack_data(stack, active=stack.name == active))


def stack_set(args: argparse.Namespace) -> Output:
    registry = Registry.open()
    effective = registry.active_stack_name()  # a bad STACKMAGIC_STACK fails before anything is written
    stack = registry.set_active_stack(args.name)
    message = f"Active stack: {stack.name}"
    if os.environ.get(STACK_ENV) and effective != stack.name:
        message += f" (but {STACK_ENV}={effective} overrides it in this process)"
    return Message(message, _stack_data(stack, active=True))


def stack_get(args: argparse.Namespace) -> Output:
    registry = Registry.open()
    name = registry.active_stack_name()
    source = STACK_ENV if name != registry.stored_active_stack() else str(registry.directory)
    return Message(name, {"active_stack": name, "source": source, "registry": str(registry.directory)})


def stack_list(args: argparse.Namespace) -> Output:
    return stacks_table(Registry.open())


def stacks_table(registry: Registry) -> Table:
    active = registry.active_stack_name()
    stacks = registry.stacks()
    columns = ["stack", *(kind.noun for kind in ComponentType)]
    return Table(
        title="Stacks",
        columns=columns,
        rows=[[s.name, *(s.components.get(kind, "-") for kind in ComponentType)] for s in stacks],
        highlight=frozenset(i for i, s in enumerate(stacks) if s.name == active),
        data=[_stack_data(s, active=s.name == active) for s in stacks],
    )


def stack_describe(args: argparse.Namespace) -> Output:
    registry = Registry.open()
    active = registry.active_stack_name()
    stack = registry.stack(args.name or active)
    components = [registry.component(kind, name) for kind, name in _ordered(stack)]
    title = f"Stack {stack.name}" + (" (active)" if stack.name == active else "")
    return Fields(
        title,
        [],
        {
            **_stack_data(stack, active=stack.name == active),
            "components": [_component_data(c) for c in components],
        },
        [_component_fields(c) for c in components],
    )


def stack_delete(args: argparse.Namespace) -> Output:
    Registry.open().delete_stack(args.name)
    return Message(f"Deleted stack {args.name!r} (its components are kept).", {"deleted": args.name})


# -- pipelines ---------------------------------------------------------------------

#: Set by Jupyter Server for every kernel it starts: the path of the kernel's notebook.
SESSION_ENV = "JPY_SESSION_NAME"


def pipeline_show(args: argparse.Namespace) -> Output:
    from .notebook.spec import load_pipeline
    from .notebook.view import pipeline_table

    return pipeline_table(load_pipeline(notebook_path(args.notebook, args.command_words)))


def pipeline_run(args: argparse.Namespace) -> Output:
    from .pipelines import parse_parameter, preview, run
    from .progress import choose
    from .run_view import run_fields

    notebook = notebook_path(args.notebook, args.command_words)
    parameters: dict[str, Any] = {}
    for name, value in args.parameter:
        if name in parameters:
            raise UsageError(f"-p {name} is given twice", args.command_words)
        parameters[name] = parse_parameter(value)
    if args.dry_run:
        if args.wait:
            raise UsageError("--dry-run starts nothing for --wait to follow; give one of the two",
                             args.command_words)
        return preview(notebook, parameters=parameters, stack=args.stack, only=args.only,
                       from_step=args.from_step)
    finished = run(
        notebook, parameters=parameters, stack=args.stack, no_cache=args.no_cache,
        only=args.only, from_step=args.from_step, wait=args.wait,
        progress=choose("none" if args.as_json else args.progress),
    )
    return run_fields(finished.record)


def pipeline_export(args: argparse.Namespace) -> Output:
    from .notebook.exporter import export_bundle
    from .notebook.spec import load_pipeline
    from .pipelines import local_paths, stack_components

    spec = load_pipeline(notebook_path(args.notebook, args.command_words))
    if args.to == "kubeflow":
        return _export_kubeflow(spec, Path(args.output).expanduser().resolve(), args.stack)
    stores = local_paths(stack_components(Registry.open(), args.stack))
    bundle = export_bundle(spec, Path(args.output).expanduser().resolve(), exclude=stores)
    lines = [f"Exported {spec.name} ({len(bundle.steps)} steps) to {bundle.directory}",
             *(f"warning: {warning}" for warning in bundle.manifest["warnings"])]
    return Message("\n".join(lines), {"directory": str(bundle.directory), **bundle.manifest})


def _export_kubeflow(spec: PipelineSpec, output: Path, stack: str | None) -> Output:
    """Compile for the stack's kubeflow orchestrator; the bundle goes to its artifact store."""
    import tempfile

    from .notebook.exporter import export_bundle
    from .orchestrators.kubeflow import compile_pipeline
    from .pipelines import OpenStack, store_bundle

    if output.is_dir():
        raise StackmagicError(f"{output} is a folder; give the YAML file to write, pipeline.yaml say")
    with OpenStack.open(Registry.open(), stack) as opened, tempfile.TemporaryDirectory(
        prefix="stackmagic-bundle-"
    ) as scratch:
        orchestrator = opened.components[ComponentType.ORCHESTRATOR]
        if orchestrator.flavor != "kubeflow":
            raise StackmagicError(
                f"stack {opened.name!r} runs pipelines with the {orchestrator.flavor} orchestrator "
                f"{orchestrator.name!r}; compiling for Kubeflow needs a stack with a kubeflow one "
                "(--stack NAME, or `stackmagic orchestrator register kf --type=kubeflow --host=URL`)"
            )
        bundle = export_bundle(spec, Path(scratch) / "bundle", exclude=opened.local_paths())
        orchestrator.config.orchestrator(opened).check(bundle)
        bundle_uri = store_bundle(opened.artifact_store, bundle)
        compile_pipeline(bundle, bundle_uri, opened, orchestrator.config, output)
    local = orchestrator.config.mode == "local"
    return Message(
        f"Compiled {spec.name} ({len(bundle.steps)} steps) for Kubeflow Pipelines to {output}; "
        f"its steps fetch the bundle {bundle_uri}"
        + ("\nnote: compiled for --mode=local (no image, no Kubernetes secret); for a cluster, "
           f"`stackmagic orchestrator update {orchestrator.name} --mode=remote --image=...`"
           if local else ""),
        {"pipeline": str(output), "bundle": bundle_uri, "steps": list(bundle.steps)},
    )


def image_dockerfile(args: argparse.Namespace) -> Output:
    from . import images
    from .notebook.spec import load_pipeline
    from .pipelines import stack_components

    spec = load_pipeline(notebook_path(args.notebook, args.command_words))
    extras = [getattr(c.config, "extra", "") for c in stack_components(Registry.open(), args.stack)]
    text = images.dockerfile(spec, extras=[e for e in extras if e], base=args.base)
    if args.output == "-":
        return Message(text.rstrip("\n"), {"dockerfile": text})
    path = Path(args.output).expanduser().resolve()
    images.write(path, text, force=args.force)
    return Message(
        f"Wrote {path}: build it with `docker build -t IMAGE -f {path.name} .`, push it, and give "
        f"it to the orchestrator (`stackmagic orchestrator update NAME --image=IMAGE`)",
        {"path": str(path), "dockerfile": text},
    )


def pipeline_runs(args: argparse.Namespace) -> Output:
    from .pipelines import OpenStack
    from .run_view import runs_table

    with OpenStack.open(Registry.open(), args.stack) as opened:
        return runs_table(opened.metadata.runs(pipeline=args.pipeline, limit=args.limit))


def pipeline_describe(args: argparse.Namespace) -> Output:
    from .pipelines import OpenStack
    from .run_view import run_fields

    with OpenStack.open(Registry.open(), args.stack) as opened:
        record = opened.metadata.run(args.run_id)
        orchestrator = opened.components[ComponentType.ORCHESTRATOR].config
        if record.orchestrator_run_id and orchestrator.flavor == record.stack.get(
            ComponentType.ORCHESTRATOR.value, {}).get("flavor"):  # ask how it ended
            reconcile = getattr(orchestrator.orchestrator(opened), "reconcile", None)
            if reconcile is not None:
                reconcile(record)
                record = opened.metadata.run(record.id)
        return run_fields(record)


def pipeline_logs(args: argparse.Namespace) -> Output:
    from .pipelines import OpenStack, run_logs

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
    return Message(text, {"run": record.id, "logs": [{"uri": u, "text": b} for u, b in logs.items()]})


def pipeline_load(args: argparse.Namespace) -> Output:
    from .pipelines import OpenStack

    step, _, wanted = args.what.partition(".")
    with OpenStack.open(Registry.open(), args.stack) as opened:
        record = opened.metadata.run(args.run_id)
    outputs = record.step(step).outputs
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
    values = {name: opened.artifact_store.load(info.uri) for name, info in chosen.items()}
    fields = [
        (name, f"{reprlib.repr(values[name])}  ({info.type_name}, from {info.uri})")
        for name, info in chosen.items()
    ]
    loaded = Fields(
        f"Loaded from run {record.id}, step {step}", fields,
        {name: info.to_json() for name, info in chosen.items()},
    )
    loaded.namespace = values
    return loaded


def notebook_path(given: str | None, command: str) -> Path:
    """The notebook a pipeline command is about: the one given, else the kernel's own."""
    path = given or os.environ.get(SESSION_ENV)
    if not path:
        raise UsageError(
            "which notebook? give its path (outside Jupyter there is no current notebook)", command
        )
    return Path(path).expanduser().resolve()


# -- helpers -------------------------------------------------------------------------


def _here() -> Path:
    """Where relative paths given in a command start: the working directory, or the folder a
    Jupyter server serves (its requests run commands without changing directory)."""
    return PROJECT_START.get() or Path.cwd()


def _members(args: argparse.Namespace) -> dict[ComponentType, str]:
    given = {
        ComponentType.METADATA_STORE: args.metadata_store,
        ComponentType.ARTIFACT_STORE: args.artifact_store,
        ComponentType.ORCHESTRATOR: args.orchestrator,
        ComponentType.STEP_OPERATOR: args.step_operator,
    }
    return {kind: name for kind, name in given.items() if name is not None}


def _ordered(stack: Stack) -> list[tuple[ComponentType, str]]:
    return [(kind, stack.components[kind]) for kind in ComponentType if kind in stack.components]


def _ask_for_secrets(
    flavor: type[FlavorConfig], name: str, options: dict[str, str | None]
) -> dict[str, str | None]:
    """``--password=-`` asks for the value instead of taking it from the command line."""
    secret = {option for option, trait in flavor.options().items() if trait.metadata.get("secret")}
    answered = dict(options)
    for option, value in options.items():
        key = option.replace("-", "_")
        if value != PROMPT or key not in secret:
            continue
        flag = option_flag(key)
        try:
            answered[option] = getpass.getpass(f"{flag} for {name}: ")
        except (EOFError, NotImplementedError):  # no terminal, or a kernel without stdin
            raise StackmagicError(
                f"cannot ask for {flag} here (no terminal to type it in); give {flag}=env:VARIABLE"
            ) from None
        if not answered[option]:
            raise StackmagicError(f"nothing was typed for {flag}; nothing changed")
    return answered


def _stacks_using(registry: Registry, kind: ComponentType) -> dict[str, list[str]]:
    users: dict[str, list[str]] = {}
    for stack in registry.stacks():
        if kind in stack.components:
            users.setdefault(stack.components[kind], []).append(stack.name)
    return users


def _component_data(component: Component) -> dict[str, Any]:
    return {
        "type": component.type.value,
        "name": component.name,
        "flavor": component.flavor,
        "options": component.config.shown(),
    }


def _stack_data(stack: Stack, *, active: bool) -> dict[str, Any]:
    return {
        "name": stack.name,
        "active": active,
        "components": {kind.value: name for kind, name in _ordered(stack)},
    }


def _settings_line(component: Component) -> str:
    shown = component.config.shown()
    given = {k: v for k, v in shown.items() if v not in ("", [], {}, None)}
    return ", ".join(f"{option_flag(k)[2:]}={format_value(v)}" for k, v in given.items()) or "-"


def _component_fields(component: Component, used_by: list[str] | None = None) -> Fields:
    fields = [("flavor", f"{component.flavor} ({type(component.config).summary()})")]
    if used_by is not None:
        fields.append(("used by", ", ".join(used_by) or "no stack"))
    fields += [
        (option_flag(k), format_value(v) or "-") for k, v in component.config.shown().items()
    ]
    data = _component_data(component)
    if used_by is not None:
        data["used_by"] = used_by
    return Fields(f"{component.type.noun.capitalize()} {component.name}", fields, data)


def _option_synopsis(option: dict[str, Any]) -> str:
    placeholder = {"boolean": "true|false", "integer": "N", "number": "X", "mapping": "K=V,..."}.get(
        option["kind"], "|".join(option.get("choices", [])) or "TEXT"
    )
    if option["secret"]:
        placeholder = f"{placeholder}|env:VARIABLE|{PROMPT}"
    notes = [note for note in ("required", "secret") if option[note]]
    if option["default"] not in ("", None, [], {}):
        notes.append(f"default {format_value(option['default'])}")
    return f"--{option['name']}={placeholder}" + (f" ({', '.join(notes)})" if notes else "")

