"""Making and removing schedules: the notebook's bundle handed to the stack's orchestrator.

``schedule`` exports the notebook as ``pipeline run`` does, asks the stack's
orchestrator to run the bundle on a cron and records the schedule in the
stack's metadata store; ``unschedule`` asks the orchestrator that made a
schedule to drop it, then forgets it. An orchestrator without ``schedule``
(the local one, a VM's) is refused with the crontab line that would do it.
"""

from __future__ import annotations

import re
import shlex
import shutil
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .component_type import ComponentType
from .errors import StackmagicError
from .open_stack import OpenStack
from .registry import Registry
from .runtime import overrides_that_change
from .schedules import CannotSchedule, ScheduleRequest, Scheduling, check_cron
from .stores.metadata import ScheduleRecord
from .stores.metadata.schedules import taken

#: What a schedule's name may be: every orchestrator can name its twin after it.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")


def schedule(
    notebook: str | Path,
    *,
    cron: str,
    name: str | None = None,
    parameters: Mapping[str, Any] | None = None,
    stack: str | None = None,
) -> ScheduleRecord:
    """Run a saved notebook's pipeline on ``cron`` (five fields, UTC) on a stack's orchestrator."""
    from .pipelines import _exported, store_bundle

    cron = check_cron(cron)
    if name is not None:
        _check_name(name, f"--name {name!r}")
    with _exported(notebook, parameters, stack, recording=True) as (
        path,
        opened,
        bundle,
        overrides,
    ):
        if name is None:
            name = bundle.pipeline
            _check_name(name, f"the pipeline's name {name!r} cannot name a schedule; give --name")
        if opened.metadata.schedule_named(name) is not None:
            raise StackmagicError(taken(name))
        config = opened.orchestrator_config
        orchestrator = config.orchestrator(opened)
        if not isinstance(orchestrator, Scheduling):
            who = opened.components[ComponentType.ORCHESTRATOR].name
            why = (
                f"the {config.flavor} orchestrator {who!r} of stack {opened.name!r} cannot run "
                "pipelines on a schedule"
            )
            raise StackmagicError(_refusal(why, opened.name, path, overrides, cron))
        orchestrator.check(bundle)
        request = ScheduleRequest(
            name=name,
            cron=cron,
            bundle=bundle,
            bundle_uri=store_bundle(opened.artifact_store, bundle),
            notebook=str(path),
            stack_name=opened.name,
            parameters={**bundle.parameters, **overrides},
            overridden=overrides_that_change(overrides, bundle.parameters),
        )
        try:
            made = orchestrator.schedule(request)
        except CannotSchedule as refused:
            raise StackmagicError(
                _refusal(str(refused), opened.name, path, overrides, cron)
            ) from None
        try:
            opened.metadata.add_schedule(
                name=name,
                pipeline=bundle.pipeline,
                notebook=str(path),
                stack_name=opened.name,
                orchestrator=config.flavor,
                cron=cron,
                parameters=request.parameters,
                bundle_uri=request.bundle_uri,
                orchestrator_id=made.orchestrator_id,
                url=made.url,
            )
        except BaseException:  # made meanwhile by another, or the store failed: undo ours
            orchestrator.unschedule(made.orchestrator_id)
            raise
        return opened.metadata.schedule(name)


def unschedule(name: str, *, stack: str | None = None) -> ScheduleRecord:
    """Drop a schedule at the orchestrator that runs it, then its record; the runs it made stay."""
    registry = Registry.open()
    with OpenStack.open(registry, stack) as opened:
        record = opened.metadata.schedule(name)
        if record.stack_name == opened.name:
            _orchestrator_of(opened, record).unschedule(record.orchestrator_id)
        else:
            if record.stack_name not in {s.name for s in registry.stacks()}:
                raise StackmagicError(
                    f"schedule {name!r} was made on stack {record.stack_name!r}, which is gone; "
                    f"register it again to reach its {record.orchestrator} orchestrator"
                )
            with OpenStack.open(registry, record.stack_name) as made_on:
                _orchestrator_of(made_on, record).unschedule(record.orchestrator_id)
        opened.metadata.delete_schedule(name)
        return record


def _check_name(name: str, what: str) -> None:
    if not _NAME.fullmatch(name):
        raise StackmagicError(
            f"{what}: a schedule's name is letters, digits, '-', '_' and '.', starting with a "
            "letter or digit (at most 100)"
        )


def _orchestrator_of(opened: OpenStack, record: ScheduleRecord) -> Scheduling:
    """The stack's orchestrator, if it is still the kind that made the schedule."""
    config = opened.orchestrator_config
    orchestrator = config.orchestrator(opened)
    if config.flavor != record.orchestrator or not isinstance(orchestrator, Scheduling):
        raise StackmagicError(
            f"schedule {record.name!r} runs on a {record.orchestrator} orchestrator, but stack "
            f"{opened.name!r} now has a {config.flavor} one; give the stack its "
            f"{record.orchestrator} orchestrator back to drop {record.orchestrator_id}"
        )
    return orchestrator


def _refusal(why: str, stack: str, notebook: Path, overrides: Mapping[str, Any], cron: str) -> str:
    """Why the stack cannot schedule, and the line of this machine's crontab that would."""
    return (
        f"{why}; use a stack with a kubeflow, kubernetes or airflow orchestrator (--stack NAME), "
        "or run it from this machine's cron (`crontab -e`; times there are the machine's): "
        + crontab_line(cron, notebook, stack, overrides)
    )


def crontab_line(cron: str, notebook: Path, stack: str, overrides: Mapping[str, Any]) -> str:
    """A crontab line that runs the notebook's pipeline, quoted for cron's ``sh``.

    The command is found by its full path (cron's PATH is short); ``%`` means a new
    line to cron, so it is escaped.
    """
    words = [
        _command(),
        "pipeline",
        "run",
        notebook.name,
        "--stack",
        stack,
        *(word for n, value in overrides.items() for word in ("-p", n, _literal(value))),
    ]
    line = f"{cron} cd {shlex.quote(str(notebook.parent))} && {shlex.join(words)}"
    return line.replace("%", "\\%")


def _command() -> str:
    """This installation's ``stackmagic``, beside its Python, else the one on the PATH."""
    beside = Path(sys.executable).with_name("stackmagic")
    if beside.is_file():
        return str(beside)
    return shutil.which("stackmagic") or "stackmagic"


def _literal(value: Any) -> str:
    """``-p``'s VALUE for a value: text as it is where it reads back as that text."""
    from .parameters import parse_parameter

    if isinstance(value, str) and parse_parameter(value) == value:
        return value
    return repr(value)
